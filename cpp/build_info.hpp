// Facts about the OpenJPH this extension runs on, for dicube.codecs.jph.build_info().
#pragma once

#include <string>

namespace dicube {

// Path of the OpenJPH shared library actually loaded ("" when unknown, e.g. a static link).
std::string openjph_loaded_library();

// OpenJPH's CPU extension level (its X86_/ARM_CPU_EXT_LEVEL_* values), -1 when it has none.
int openjph_cpu_ext_level();

}  // namespace dicube
