// Member spans of a JSON object without parsing it (lazy per-slice metadata).
#pragma once
#include <pybind11/pybind11.h>

namespace dicube {

// Defines _native.json_object_spans.
void register_json_spans(pybind11::module_& m);

}  // namespace dicube
