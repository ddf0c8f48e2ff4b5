#include "zstd_planes.hpp"

#include <zstd.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>

#include "errors.hpp"

namespace dicube {
namespace {

struct CCtxFree {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
struct DCtxFree {
  void operator()(ZSTD_DCtx* c) const { ZSTD_freeDCtx(c); }
};

// Samples are native-endian; planes are defined on the value, so this is endian-neutral.
template <typename T>
void split(const T* src, size_t n, uint8_t* planes) {
  for (size_t k = 0; k < sizeof(T); ++k)
    for (size_t i = 0; i < n; ++i) planes[k * n + i] = static_cast<uint8_t>(static_cast<uint64_t>(src[i]) >> (8 * k));
}

template <typename T>
void join(const uint8_t* planes, size_t n, T* dst) {
  using U = std::make_unsigned_t<T>;
  if constexpr (sizeof(T) == 2) {
    size_t i = 0;
#if defined(__SSE2__)  // x86 is little-endian: interleaving the planes' bytes gives the samples
    // Streaming stores skip reading the output's cache lines first: the join runs ~2.5x
    // faster, bound by writing the frame to memory.
    if ((reinterpret_cast<uintptr_t>(dst) & 15) == 0) {
      for (; i + 16 <= n; i += 16) {
        __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(planes + i));
        __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(planes + n + i));
        _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i), _mm_unpacklo_epi8(lo, hi));
        _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i + 8), _mm_unpackhi_epi8(lo, hi));
      }
      _mm_sfence();
    }
    for (; i + 16 <= n; i += 16) {
      __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(planes + i));
      __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(planes + n + i));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm_unpacklo_epi8(lo, hi));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i + 8), _mm_unpackhi_epi8(lo, hi));
    }
#endif
    for (; i < n; ++i) dst[i] = static_cast<T>(static_cast<U>(planes[i] | (planes[n + i] << 8)));
  } else {
    for (size_t i = 0; i < n; ++i) {
      uint32_t v = 0;
      for (size_t k = 0; k < sizeof(T); ++k) v |= static_cast<uint32_t>(planes[k * n + i]) << (8 * k);
      dst[i] = static_cast<T>(static_cast<U>(v));
    }
  }
}

template <typename Fn>
void by_type(SampleType t, Fn fn) {
  switch (t) {
    case SampleType::U8: return fn(uint8_t{});
    case SampleType::I8: return fn(int8_t{});
    case SampleType::U16: return fn(uint16_t{});
    case SampleType::I16: return fn(int16_t{});
    case SampleType::U32: return fn(uint32_t{});
    case SampleType::I32: return fn(int32_t{});
  }
}

}  // namespace

std::string encode_planes(const ImageView& image, int level) {
  const size_t bytes = frame_bytes(image);
  const size_t n = bytes / sample_bytes(image.type);
  std::vector<uint8_t> planes(bytes);
  by_type(image.type, [&](auto zero) { split(static_cast<const decltype(zero)*>(image.data), n, planes.data()); });
  thread_local std::unique_ptr<ZSTD_CCtx, CCtxFree> cctx(ZSTD_createCCtx());
  if (!cctx) throw std::bad_alloc();
  std::string out(ZSTD_compressBound(bytes), '\0');
  size_t r = ZSTD_compressCCtx(cctx.get(), out.data(), out.size(), planes.data(), bytes, level);
  if (ZSTD_isError(r)) throw CodecFailure(std::string("zstd: ") + ZSTD_getErrorName(r));
  out.resize(r);
  return out;
}

void decode_planes(const uint8_t* data, size_t size, const ImageView& out) {
  const size_t bytes = frame_bytes(out);
  const size_t n = bytes / sample_bytes(out.type);
  unsigned long long declared = ZSTD_getFrameContentSize(data, size);
  if (declared != bytes)
    throw CodecFailure(declared == ZSTD_CONTENTSIZE_ERROR ? std::string("not a zstd frame")
                                                          : "zstd frame does not hold " + std::to_string(bytes) + " bytes");
  thread_local std::unique_ptr<ZSTD_DCtx, DCtxFree> dctx(ZSTD_createDCtx());
  thread_local std::vector<uint8_t> planes;
  if (!dctx) throw std::bad_alloc();
  const bool direct = sample_bytes(out.type) == 1;
  if (!direct && planes.size() < bytes) planes.resize(bytes);
  uint8_t* target = direct ? static_cast<uint8_t*>(out.data) : planes.data();
  size_t r = ZSTD_decompressDCtx(dctx.get(), target, bytes, data, size);
  if (ZSTD_isError(r)) throw CodecFailure(std::string("zstd: ") + ZSTD_getErrorName(r));
  if (r != bytes) throw CodecFailure("zstd frame holds " + std::to_string(r) + " bytes, expected " + std::to_string(bytes));
  if (!direct) by_type(out.type, [&](auto zero) { join(planes.data(), n, static_cast<decltype(zero)*>(out.data)); });
  if (planes.size() > (size_t(64) << 20)) std::vector<uint8_t>().swap(planes);
}

}  // namespace dicube
