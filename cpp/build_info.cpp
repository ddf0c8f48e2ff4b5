#include "build_info.hpp"

#include <dlfcn.h>

#include <ojph_arch.h>

namespace dicube {

#ifdef DICUBE_OJPH_HAS_CPU_EXT
std::string openjph_loaded_library() {
  // Any exported OpenJPH function lies in the loaded library; ask the loader which file that is.
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&ojph::get_cpu_ext_level), &info) && info.dli_fname) return info.dli_fname;
  return "";
}

int openjph_cpu_ext_level() { return ojph::get_cpu_ext_level(); }
#else
std::string openjph_loaded_library() { return ""; }

int openjph_cpu_ext_level() { return -1; }
#endif

}  // namespace dicube
