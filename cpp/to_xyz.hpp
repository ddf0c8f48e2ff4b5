// A (z, y, x) volume of stored integers as real values in (x, y, z) order, in one pass.
#pragma once
#include <cstddef>

#include "jph_codec.hpp"

namespace dicube {

enum class RealType { F32, F64 };

// out[x, y, z] = raw[z, y, x] * slope[z] + intercept[z], computed in the output type
// (a separate multiply and add, as numpy does: no fused multiply-add). slope or intercept
// may be null (left out, not 1 or 0: -0.0 stays -0.0). Rows of y are split over threads.
void to_xyz(const void* raw, SampleType in, void* out, RealType type, size_t nz, size_t ny, size_t nx,
            const void* slope, const void* intercept, unsigned threads);

}  // namespace dicube
