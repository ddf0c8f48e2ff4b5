// Error type of the extension and OpenJPH message handlers that never end the process.
#pragma once
#include <stdexcept>
#include <string>

namespace dicube {

// Any failure in codec work; the bindings turn it into dicube.exceptions.CodecError.
struct CodecFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Values that do not fit the declared precision; turned into CodecError too, with the value named.
struct RangeFailure : CodecFailure {
  using CodecFailure::CodecFailure;
};

// OpenJPH reports errors through global handlers whose default prints to stderr. Ours
// throws CodecFailure carrying the formatted message (thread-safe: no shared state) and
// silences warnings and info. Called once when the module is imported.
void install_openjph_handlers();

}  // namespace dicube
