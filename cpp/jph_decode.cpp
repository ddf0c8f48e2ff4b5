#include <algorithm>
#include <climits>
#include <string>

#include <ojph_version.h>

#include <ojph_arch.h>
#include <ojph_codestream.h>
#include <ojph_file.h>
#include <ojph_mem.h>
#include <ojph_params.h>

#include "assert_guard.hpp"
#include "errors.hpp"
#include "jph_codec.hpp"

namespace dicube {
namespace {

// Copy one decoded line into component c of row y; false when a value is outside [lo, hi].
// The single-component case is written apart so the compiler vectorises it.
template <typename T>
bool store_row(const ojph::si32* src, uint32_t cols, uint32_t comps, T* dst, int64_t lo, int64_t hi) {
  const ojph::si32 l = static_cast<ojph::si32>(std::max<int64_t>(lo, INT32_MIN));
  const ojph::si32 h = static_cast<ojph::si32>(std::min<int64_t>(hi, INT32_MAX));
  ojph::si32 mn = h, mx = l;
  if (comps == 1) {
    for (uint32_t x = 0; x < cols; ++x) {
      ojph::si32 v = src[x];
      mn = std::min(mn, v);
      mx = std::max(mx, v);
      dst[x] = static_cast<T>(v);
    }
  } else {
    for (uint32_t x = 0; x < cols; ++x) {
      ojph::si32 v = src[x];
      mn = std::min(mn, v);
      mx = std::max(mx, v);
      dst[static_cast<size_t>(x) * comps] = static_cast<T>(v);
    }
  }
  return mn >= l && mx <= h;
}

#if defined(__x86_64__) && defined(__GNUC__)
// The one-component loop again, compiled for AVX2 (min, max and narrowing 8 samples at a
// time; the baseline build has no 32-bit min/max instructions). Same results.
template <typename T>
__attribute__((target("avx2"))) bool store_gray_avx2(const ojph::si32* src, uint32_t cols, T* dst, int64_t lo,
                                                     int64_t hi) {
  const ojph::si32 l = static_cast<ojph::si32>(std::max<int64_t>(lo, INT32_MIN));
  const ojph::si32 h = static_cast<ojph::si32>(std::min<int64_t>(hi, INT32_MAX));
  ojph::si32 mn = h, mx = l;
  for (uint32_t x = 0; x < cols; ++x) {
    ojph::si32 v = src[x];
    mn = std::min(mn, v);
    mx = std::max(mx, v);
    dst[x] = static_cast<T>(v);
  }
  return mn >= l && mx <= h;
}

const bool kHasAvx2 = __builtin_cpu_supports("avx2");
#endif

bool store_line(const ImageView& out, uint32_t y, uint32_t c, const ojph::line_buf* line, int64_t lo, int64_t hi) {
  size_t offset = (static_cast<size_t>(y) * out.cols * out.comps + c) * sample_bytes(out.type);
  char* row = static_cast<char*>(out.data) + offset;
  const ojph::si32* src = line->i32;
#if defined(__x86_64__) && defined(__GNUC__)
  if (out.comps == 1 && kHasAvx2) {
    switch (out.type) {
      case SampleType::U8: return store_gray_avx2(src, out.cols, reinterpret_cast<uint8_t*>(row), lo, hi);
      case SampleType::I8: return store_gray_avx2(src, out.cols, reinterpret_cast<int8_t*>(row), lo, hi);
      case SampleType::U16: return store_gray_avx2(src, out.cols, reinterpret_cast<uint16_t*>(row), lo, hi);
      case SampleType::I16: return store_gray_avx2(src, out.cols, reinterpret_cast<int16_t*>(row), lo, hi);
      case SampleType::U32: return store_gray_avx2(src, out.cols, reinterpret_cast<uint32_t*>(row), lo, hi);
      case SampleType::I32: return store_gray_avx2(src, out.cols, reinterpret_cast<int32_t*>(row), lo, hi);
    }
  }
#endif
  switch (out.type) {
    case SampleType::U8: return store_row(src, out.cols, out.comps, reinterpret_cast<uint8_t*>(row), lo, hi);
    case SampleType::I8: return store_row(src, out.cols, out.comps, reinterpret_cast<int8_t*>(row), lo, hi);
    case SampleType::U16: return store_row(src, out.cols, out.comps, reinterpret_cast<uint16_t*>(row), lo, hi);
    case SampleType::I16: return store_row(src, out.cols, out.comps, reinterpret_cast<int16_t*>(row), lo, hi);
    case SampleType::U32: return store_row(src, out.cols, out.comps, reinterpret_cast<uint32_t*>(row), lo, hi);
    case SampleType::I32: return store_row(src, out.cols, out.comps, reinterpret_cast<int32_t*>(row), lo, hi);
  }
  return false;
}

// Reduced-resolution images are low-pass versions of the samples; the 5/3 filter's
// negative taps overshoot at sharp edges, so those values are clamped to the range.
void clamp_line(ojph::line_buf* line, uint32_t cols, int64_t lo, int64_t hi) {
  const ojph::si32 l = static_cast<ojph::si32>(std::max<int64_t>(lo, INT32_MIN));
  const ojph::si32 h = static_cast<ojph::si32>(std::min<int64_t>(hi, INT32_MAX));
  ojph::si32* v = line->i32;
  for (uint32_t x = 0; x < cols; ++x) v[x] = std::min(std::max(v[x], l), h);
}

}  // namespace

void reduced_size(const HeaderInfo& h, uint32_t skip, uint32_t& rows, uint32_t& cols) {
  // Image offsets are zero in everything we accept to decode (checked in decode_image).
  rows = ceil_shift(h.height, skip);
  cols = ceil_shift(h.width, skip);
}

void decode_image(const uint8_t* data, size_t size, const ImageView& out, const DecodeOptions& opt) {
  HeaderInfo h = parse_main_header(data, size);
  if (opt.verify) verify_checksum(data, size, h);

  const ComponentInfo& c0 = h.components[0];
  for (const ComponentInfo& c : h.components) {
    if (c.dx != 1 || c.dy != 1) throw CodecFailure("sub-sampled components are not supported");
    if (c.bit_depth != c0.bit_depth || c.is_signed != c0.is_signed)
      throw CodecFailure("components of different precision are not supported");
  }
  if (h.components.size() != out.comps)
    throw CodecFailure("codestream has " + std::to_string(h.components.size()) +
                       " components, output expects " + std::to_string(out.comps));
  if (c0.bit_depth > sample_bytes(out.type) * 8 || c0.is_signed != sample_signed(out.type))
    throw CodecFailure("codestream samples (" + std::to_string(c0.bit_depth) + "-bit " +
                       (c0.is_signed ? "signed" : "unsigned") + ") do not fit the output type");
  if (c0.bit_depth > max_bits_stored())
    throw CodecFailure("codestream precision of " + std::to_string(c0.bit_depth) + " bits is not supported");
  if (opt.skip_levels > h.levels)
    throw CodecFailure("cannot skip " + std::to_string(opt.skip_levels) + " levels of a codestream with " +
                       std::to_string(h.levels));
#if OPENJPH_VERSION_MAJOR == 0 && OPENJPH_VERSION_MINOR < 10
  // OpenJPH 0.9 decodes wrong pixels, without any error, past max_safe_levels
  // (seen on imagecodecs' codestreams of small images): refuse rather than mislead.
  if (h.levels > max_safe_levels(h.width, h.height))
    throw CodecFailure(std::to_string(h.levels) + " decomposition levels on a " + std::to_string(h.width) + "x" +
                       std::to_string(h.height) + " image: OpenJPH " DICUBE_OJPH_VERSION
                       " cannot decode this correctly (build against a newer OpenJPH)");
#endif
  uint32_t rows, cols;
  reduced_size(h, opt.skip_levels, rows, cols);
  if (rows != out.rows || cols != out.cols)
    throw CodecFailure("codestream is " + std::to_string(rows) + "x" + std::to_string(cols) +
                       ", output expects " + std::to_string(out.rows) + "x" + std::to_string(out.cols));

  const int64_t lo = c0.is_signed ? -(int64_t(1) << (c0.bit_depth - 1)) : 0;
  const int64_t hi = c0.is_signed ? (int64_t(1) << (c0.bit_depth - 1)) - 1 : (int64_t(1) << c0.bit_depth) - 1;

  // `in` and `cs` live outside the guarded calls so that they are destroyed even when a
  // failed OpenJPH assertion leaves those calls mid-way.
  ojph::mem_infile in;
  ojph::codestream cs;
  bool in_range = true;
  guard_openjph([&] {
    in.open(data, size);
    if (opt.resilient) cs.enable_resilience();
    cs.read_headers(&in);
    ojph::param_siz siz = cs.access_siz();
    if (siz.get_image_offset().x != 0 || siz.get_image_offset().y != 0)
      throw CodecFailure("codestreams with a non-zero image offset are not supported");
    if (opt.skip_levels) cs.restrict_input_resolution(opt.skip_levels, opt.skip_levels);
    if (siz.get_recon_width(0) != cols || siz.get_recon_height(0) != rows)
      throw CodecFailure("decoder reports an unexpected reconstructed size");
    cs.set_planar(false);
    cs.create();
    for (uint32_t y = 0; y < rows; ++y) {
      for (uint32_t c = 0; c < out.comps; ++c) {
        ojph::ui32 comp = 0;
        ojph::line_buf* line = cs.pull(comp);
        if (line == nullptr || comp >= out.comps) throw CodecFailure("decoder returned no line");
        if (opt.skip_levels) clamp_line(line, cols, lo, hi);
        in_range &= store_line(out, y, comp, line, lo, hi);
      }
    }
    cs.close();
  });
  if (!in_range) throw CodecFailure("decoded samples fall outside the declared precision: corrupt codestream");
}

}  // namespace dicube
