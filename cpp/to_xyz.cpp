#include "to_xyz.hpp"

#include <algorithm>
#include <cstdint>

#include "parallel.hpp"

namespace dicube {
namespace {

constexpr size_t kXB = 32;  // columns per tile
constexpr size_t kZB = 16;  // slices per tile: one 64-byte run of float32 output

// Tiles of kZB slices x kXB columns of one row: converted into `tile`, then written out as
// kXB runs along z.
template <typename In, typename Out, bool Slope, bool Inter>
void rows(const In* raw, Out* out, size_t nz, size_t ny, size_t nx, const Out* slope, const Out* inter,
          size_t y0, size_t y1) {
  Out tile[kZB][kXB];
  for (size_t y = y0; y < y1; ++y) {
    for (size_t x0 = 0; x0 < nx; x0 += kXB) {
      const size_t xb = std::min(kXB, nx - x0);
      for (size_t z0 = 0; z0 < nz; z0 += kZB) {
        const size_t zb = std::min(kZB, nz - z0);
        for (size_t dz = 0; dz < zb; ++dz) {
          const In* src = raw + ((z0 + dz) * ny + y) * nx + x0;
          Out* t = tile[dz];
          if (Slope && Inter) {
            const Out a = slope[z0 + dz], b = inter[z0 + dz];
            for (size_t dx = 0; dx < xb; ++dx) {
              Out v = static_cast<Out>(src[dx]) * a;
              t[dx] = v + b;
            }
          } else if (Slope) {
            const Out a = slope[z0 + dz];
            for (size_t dx = 0; dx < xb; ++dx) t[dx] = static_cast<Out>(src[dx]) * a;
          } else if (Inter) {
            const Out b = inter[z0 + dz];
            for (size_t dx = 0; dx < xb; ++dx) t[dx] = static_cast<Out>(src[dx]) + b;
          } else {
            for (size_t dx = 0; dx < xb; ++dx) t[dx] = static_cast<Out>(src[dx]);
          }
        }
        for (size_t dx = 0; dx < xb; ++dx) {
          Out* dst = out + ((x0 + dx) * ny + y) * nz + z0;
          for (size_t dz = 0; dz < zb; ++dz) dst[dz] = tile[dz][dx];
        }
      }
    }
  }
}

template <typename In, typename Out>
void run(const void* raw, void* out, size_t nz, size_t ny, size_t nx, const void* slope, const void* inter,
         unsigned threads) {
  const auto* r = static_cast<const In*>(raw);
  auto* o = static_cast<Out*>(out);
  const auto* s = static_cast<const Out*>(slope);
  const auto* b = static_cast<const Out*>(inter);
  auto fn = s ? (b ? rows<In, Out, true, true> : rows<In, Out, true, false>)
              : (b ? rows<In, Out, false, true> : rows<In, Out, false, false>);
  constexpr size_t kRows = 8;
  parallel_for((ny + kRows - 1) / kRows, threads, [&](size_t i) {
    fn(r, o, nz, ny, nx, s, b, i * kRows, std::min(ny, (i + 1) * kRows));
  });
}

template <typename Out>
void dispatch(const void* raw, SampleType in, void* out, size_t nz, size_t ny, size_t nx, const void* slope,
              const void* inter, unsigned threads) {
  switch (in) {
    case SampleType::U8: return run<uint8_t, Out>(raw, out, nz, ny, nx, slope, inter, threads);
    case SampleType::I8: return run<int8_t, Out>(raw, out, nz, ny, nx, slope, inter, threads);
    case SampleType::U16: return run<uint16_t, Out>(raw, out, nz, ny, nx, slope, inter, threads);
    case SampleType::I16: return run<int16_t, Out>(raw, out, nz, ny, nx, slope, inter, threads);
    case SampleType::U32: return run<uint32_t, Out>(raw, out, nz, ny, nx, slope, inter, threads);
    case SampleType::I32: return run<int32_t, Out>(raw, out, nz, ny, nx, slope, inter, threads);
  }
}

}  // namespace

void to_xyz(const void* raw, SampleType in, void* out, RealType type, size_t nz, size_t ny, size_t nx,
            const void* slope, const void* intercept, unsigned threads) {
  if (type == RealType::F32)
    dispatch<float>(raw, in, out, nz, ny, nx, slope, intercept, threads);
  else
    dispatch<double>(raw, in, out, nz, ny, nx, slope, intercept, threads);
}

}  // namespace dicube
