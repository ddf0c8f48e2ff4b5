// Lossless HTJ2K encoding and decoding of one image with OpenJPH.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "codestream.hpp"

namespace dicube {

enum class SampleType { U8, I8, U16, I16, U32, I32 };

size_t sample_bytes(SampleType t);
bool sample_signed(SampleType t);

// A contiguous image of interleaved samples: rows x cols x comps.
struct ImageView {
  void* data = nullptr;
  SampleType type = SampleType::U16;
  uint32_t rows = 0, cols = 0, comps = 1;
};
size_t frame_bytes(const ImageView& v);          // bytes of one rows x cols x comps image
ImageView frame_at(const ImageView& v, size_t i);  // image i of consecutive images like v

struct EncodeOptions {
  uint32_t bits_stored = 0;              // 0: full width of the sample type
  uint32_t levels = 5;                   // wavelet decomposition levels
  uint32_t block_width = 64, block_height = 64;
  std::string progression = "RPCL";
  bool color_transform = false;          // reversible colour transform (RCT) for 3 components
  bool tlm = true;                       // TLM marker + tile-parts per resolution, when OpenJPH has them
  bool checksum = true;                  // dicube's CRC-32C COM segment
};

struct DecodeOptions {
  uint32_t skip_levels = 0;              // reduced-resolution decode: drop this many finest levels
  bool verify = true;                    // check dicube's checksum when the codestream has one
  bool resilient = false;                // OpenJPH's resilient mode (tolerates corrupt data)
};

// Highest precision this build encodes losslessly (limited by OpenJPH's 32-bit line buffers).
uint32_t max_bits_stored();

// Most decomposition levels OpenJPH 0.9 decodes correctly on a width x height image:
// ceil(log2(larger side)), at least 1. Measured: beyond it (e.g. 4x4 with 3 levels,
// 8x6 with 4) it returns wrong pixels without an error.
uint32_t max_safe_levels(uint32_t width, uint32_t height);

// Levels to use for an image: the request, lowered to what every decoder handles.
uint32_t levels_for_image(uint32_t requested, uint32_t width, uint32_t height);

// Encode; throws RangeFailure when a sample does not fit bits_stored, CodecFailure otherwise.
std::string encode_image(const ImageView& image, const EncodeOptions& options);

// Size of the image decoded with skip_levels finest levels dropped.
void reduced_size(const HeaderInfo& info, uint32_t skip_levels, uint32_t& rows, uint32_t& cols);

// Decode into out, whose shape and sample type must match the codestream
// (checked; CodecFailure otherwise). Decoded values outside the declared precision
// are reported as corruption.
void decode_image(const uint8_t* data, size_t size, const ImageView& out, const DecodeOptions& options);

}  // namespace dicube
