#include <algorithm>
#include <limits>

#include <ojph_arch.h>
#include <ojph_codestream.h>
#include <ojph_file.h>
#include <ojph_mem.h>
#include <ojph_params.h>

#include "errors.hpp"
#include "jph_codec.hpp"

namespace dicube {

ImageView frame_at(const ImageView& v, size_t i) {
  ImageView f = v;
  f.data = static_cast<char*>(v.data) + i * frame_bytes(v);
  return f;
}

size_t frame_bytes(const ImageView& v) {
  return static_cast<size_t>(v.rows) * v.cols * v.comps * sample_bytes(v.type);
}

size_t sample_bytes(SampleType t) {
  switch (t) {
    case SampleType::U8: case SampleType::I8: return 1;
    case SampleType::U16: case SampleType::I16: return 2;
    default: return 4;
  }
}

bool sample_signed(SampleType t) {
  return t == SampleType::I8 || t == SampleType::I16 || t == SampleType::I32;
}

// OpenJPH moves samples in 32-bit integer lines and the 5/3 transform needs headroom.
// Measured with OpenJPH 0.9: its decoder fails on unsigned samples of 22 bits or more
// (signed from 24), and its encoder hits an assertion (process abort) at 28 bits.
uint32_t max_bits_stored() { return 21; }

namespace {

template <typename T>
void value_range(const T* p, size_t n, int64_t& lo, int64_t& hi) {
  T mn = std::numeric_limits<T>::max(), mx = std::numeric_limits<T>::lowest();
  for (size_t i = 0; i < n; ++i) {
    mn = std::min(mn, p[i]);
    mx = std::max(mx, p[i]);
  }
  lo = mn;
  hi = mx;
}

void image_range(const ImageView& im, int64_t& lo, int64_t& hi) {
  size_t n = static_cast<size_t>(im.rows) * im.cols * im.comps;
  switch (im.type) {
    case SampleType::U8: value_range(static_cast<const uint8_t*>(im.data), n, lo, hi); break;
    case SampleType::I8: value_range(static_cast<const int8_t*>(im.data), n, lo, hi); break;
    case SampleType::U16: value_range(static_cast<const uint16_t*>(im.data), n, lo, hi); break;
    case SampleType::I16: value_range(static_cast<const int16_t*>(im.data), n, lo, hi); break;
    case SampleType::U32: value_range(static_cast<const uint32_t*>(im.data), n, lo, hi); break;
    case SampleType::I32: value_range(static_cast<const int32_t*>(im.data), n, lo, hi); break;
  }
}

uint32_t bits_for(int64_t lo, int64_t hi, bool is_signed) {
  uint32_t b = 1;
  if (is_signed) {
    while (lo < -(int64_t(1) << (b - 1)) || hi > (int64_t(1) << (b - 1)) - 1) ++b;
  } else {
    while (hi > (int64_t(1) << b) - 1) ++b;
  }
  return b;
}

template <typename T>
void copy_row(const T* src, uint32_t cols, uint32_t comps, ojph::si32* dst) {
  for (uint32_t x = 0; x < cols; ++x) dst[x] = static_cast<ojph::si32>(src[static_cast<size_t>(x) * comps]);
}

void fill_line(const ImageView& im, uint32_t y, uint32_t c, ojph::line_buf* line) {
  size_t offset = (static_cast<size_t>(y) * im.cols * im.comps + c) * sample_bytes(im.type);
  const char* row = static_cast<const char*>(im.data) + offset;
  switch (im.type) {
    case SampleType::U8: copy_row(reinterpret_cast<const uint8_t*>(row), im.cols, im.comps, line->i32); break;
    case SampleType::I8: copy_row(reinterpret_cast<const int8_t*>(row), im.cols, im.comps, line->i32); break;
    case SampleType::U16: copy_row(reinterpret_cast<const uint16_t*>(row), im.cols, im.comps, line->i32); break;
    case SampleType::I16: copy_row(reinterpret_cast<const int16_t*>(row), im.cols, im.comps, line->i32); break;
    case SampleType::U32: copy_row(reinterpret_cast<const uint32_t*>(row), im.cols, im.comps, line->i32); break;
    case SampleType::I32: copy_row(reinterpret_cast<const int32_t*>(row), im.cols, im.comps, line->i32); break;
  }
}

uint32_t ceil_log2(uint32_t v) {
  uint32_t n = 0;
  while ((1ull << n) < v) ++n;
  return n;
}

}  // namespace

uint32_t max_safe_levels(uint32_t width, uint32_t height) {
  return std::max<uint32_t>(1, ceil_log2(std::max(width, height)));
}

uint32_t levels_for_image(uint32_t requested, uint32_t width, uint32_t height) {
  // Never 0: OpenJPH 0.31 is not lossless with 0 levels on unsigned data.
  return std::max<uint32_t>(1, std::min(requested, max_safe_levels(width, height)));
}

std::string encode_image(const ImageView& im, const EncodeOptions& opt) {
  if (im.rows == 0 || im.cols == 0) throw CodecFailure("cannot encode an empty image");
  if (im.rows > 65535 || im.cols > 65535) throw CodecFailure("image larger than 65535 in a dimension");
  if (im.comps != 1 && im.comps != 3) throw CodecFailure("only 1 or 3 samples per pixel are supported");
  const bool is_signed = sample_signed(im.type);
  const uint32_t type_bits = static_cast<uint32_t>(sample_bytes(im.type) * 8);

  int64_t lo, hi;
  image_range(im, lo, hi);
  uint32_t bits = opt.bits_stored;
  if (bits == 0) bits = type_bits <= 16 ? type_bits : bits_for(lo, hi, is_signed);
  if (bits > type_bits) throw CodecFailure("bits_stored exceeds the sample type's width");
  if (bits > max_bits_stored())
    throw CodecFailure("precision of " + std::to_string(bits) + " bits is above the " +
                       std::to_string(max_bits_stored()) + " bits this codec encodes losslessly");
  if (bits_for(lo, hi, is_signed) > bits)
    throw RangeFailure("sample values span [" + std::to_string(lo) + ", " + std::to_string(hi) +
                       "], which does not fit " + std::to_string(bits) + "-bit " +
                       (is_signed ? "signed" : "unsigned") + " precision (bits_stored)");

  const uint32_t levels = levels_for_image(opt.levels, im.cols, im.rows);

  ojph::codestream cs;
  ojph::param_siz siz = cs.access_siz();
  siz.set_image_extent(ojph::point(im.cols, im.rows));
  siz.set_image_offset(ojph::point(0, 0));
  siz.set_tile_size(ojph::size(im.cols, im.rows));
  siz.set_tile_offset(ojph::point(0, 0));
  siz.set_num_components(im.comps);
  for (uint32_t c = 0; c < im.comps; ++c) siz.set_component(c, ojph::point(1, 1), bits, is_signed);

  ojph::param_cod cod = cs.access_cod();
  cod.set_num_decomposition(levels);
  cod.set_block_dims(opt.block_width, opt.block_height);
  cod.set_progression_order(opt.progression.c_str());
  cod.set_color_transform(im.comps == 3 && opt.color_transform);
  cod.set_reversible(true);
  cs.set_planar(false);
#ifdef DICUBE_OJPH_HAS_TLM
  cs.set_tilepart_divisions(opt.tlm, false);
  cs.request_tlm_marker(opt.tlm);
#endif

  ojph::mem_outfile out;
  out.open(static_cast<size_t>(im.rows) * im.cols * im.comps * sample_bytes(im.type) / 2 + 4096);
  cs.write_headers(&out);
  ojph::ui32 next_comp = 0;
  ojph::line_buf* line = cs.exchange(nullptr, next_comp);
  for (uint32_t y = 0; y < im.rows; ++y) {
    for (uint32_t c = 0; c < im.comps; ++c) {
      fill_line(im, y, next_comp, line);
      line = cs.exchange(line, next_comp);
    }
  }
  cs.flush();
  const uint8_t* bytes = out.get_data();
  size_t n = static_cast<size_t>(out.tell());
  std::string result = opt.checksum ? add_checksum(bytes, n)
                                    : std::string(reinterpret_cast<const char*>(bytes), n);
  cs.close();
  return result;
}

}  // namespace dicube
