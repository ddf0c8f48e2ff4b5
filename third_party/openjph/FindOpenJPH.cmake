# Locate an installed OpenJPH (HTJ2K codec) without bundling its source.
#
# Order of search:
#   1. A CMake package config (OpenJPH >= 0.10 installs one), honouring
#      OpenJPH_DIR / openjph_DIR and CMAKE_PREFIX_PATH.
#   2. pkg-config (openjph.pc) when it carries usable paths.
#   3. Plain header/library search under CMAKE_PREFIX_PATH, OPENJPH_ROOT and the
#      system prefixes (Debian's libopenjph-dev ships a .pc file with empty fields).
# The version is always read from ojph_version.h of the headers actually used, so
# the compile-time feature switches match the library we compile against.
#
# Result: imported target OpenJPH::OpenJPH, OpenJPH_VERSION, OpenJPH_INCLUDE_DIR.

include(FindPackageHandleStandardArgs)
include("${CMAKE_CURRENT_LIST_DIR}/versions.cmake")

string(CONCAT _ojph_hint_msg
  "OpenJPH (HTJ2K codec library) was not found. On Debian/Ubuntu install it with:\n"
  "    apt-get install libopenjph-dev\n"
  "or point CMake at a newer build with -DCMAKE_PREFIX_PATH=<prefix> or -DOpenJPH_DIR=<dir of openjph-config.cmake>.")

if(OpenJPH_DIR AND NOT openjph_DIR)
  set(openjph_DIR "${OpenJPH_DIR}")
endif()

set(_ojph_target "")
find_package(openjph CONFIG QUIET)
if(openjph_FOUND)
  foreach(_cand openjph::openjph openjph)
    if(TARGET ${_cand} AND NOT _ojph_target)
      set(_ojph_target ${_cand})
    endif()
  endforeach()
endif()

if(_ojph_target)
  get_target_property(_ojph_incs ${_ojph_target} INTERFACE_INCLUDE_DIRECTORIES)
  find_path(OpenJPH_INCLUDE_DIR NAMES ojph_version.h ojph_arch.h
    HINTS ${_ojph_incs} PATH_SUFFIXES openjph NO_DEFAULT_PATH)
else()
  find_package(PkgConfig QUIET)
  if(PKG_CONFIG_FOUND)
    pkg_check_modules(PC_OPENJPH QUIET openjph)
  endif()
  find_path(OpenJPH_INCLUDE_DIR NAMES ojph_arch.h
    HINTS ${PC_OPENJPH_INCLUDEDIR} ${PC_OPENJPH_INCLUDE_DIRS} $ENV{OPENJPH_ROOT}/include
    PATH_SUFFIXES openjph)
  find_library(OpenJPH_LIBRARY NAMES openjph
    HINTS ${PC_OPENJPH_LIBDIR} ${PC_OPENJPH_LIBRARY_DIRS} $ENV{OPENJPH_ROOT}/lib $ENV{OPENJPH_ROOT}/lib64)
endif()

set(OpenJPH_VERSION "")
if(OpenJPH_INCLUDE_DIR)
  set(_vfile "${OpenJPH_INCLUDE_DIR}/ojph_version.h")
  if(EXISTS "${_vfile}")
    file(STRINGS "${_vfile}" _vlines REGEX "#define OPENJPH_VERSION_(MAJOR|MINOR|PATCH)")
    foreach(_part MAJOR MINOR PATCH)
      string(REGEX MATCH "OPENJPH_VERSION_${_part} +([0-9]+)" _m "${_vlines}")
      set(_ojph_${_part} "${CMAKE_MATCH_1}")
    endforeach()
    set(OpenJPH_VERSION "${_ojph_MAJOR}.${_ojph_MINOR}.${_ojph_PATCH}")
  endif()
endif()

if(_ojph_target)
  find_package_handle_standard_args(OpenJPH
    REQUIRED_VARS OpenJPH_INCLUDE_DIR VERSION_VAR OpenJPH_VERSION
    REASON_FAILURE_MESSAGE "${_ojph_hint_msg}")
else()
  find_package_handle_standard_args(OpenJPH
    REQUIRED_VARS OpenJPH_LIBRARY OpenJPH_INCLUDE_DIR VERSION_VAR OpenJPH_VERSION
    REASON_FAILURE_MESSAGE "${_ojph_hint_msg}")
endif()

if(OpenJPH_FOUND)
  if(OpenJPH_VERSION VERSION_LESS OPENJPH_MIN_VERSION)
    message(FATAL_ERROR "OpenJPH ${OpenJPH_VERSION} found in ${OpenJPH_INCLUDE_DIR}, "
      "but dicube needs at least ${OPENJPH_MIN_VERSION}. ${_ojph_hint_msg}")
  endif()
  if(NOT TARGET OpenJPH::OpenJPH)
    add_library(OpenJPH::OpenJPH INTERFACE IMPORTED)
    if(_ojph_target)
      target_link_libraries(OpenJPH::OpenJPH INTERFACE ${_ojph_target})
    else()
      target_link_libraries(OpenJPH::OpenJPH INTERFACE "${OpenJPH_LIBRARY}")
    endif()
    # Our sources include <ojph_*.h> directly, whatever layout the package uses.
    target_include_directories(OpenJPH::OpenJPH INTERFACE "${OpenJPH_INCLUDE_DIR}")
  endif()
endif()
