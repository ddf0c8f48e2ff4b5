// The "zstd" frame codec of .dcbs: a frame's samples split into byte planes (plane k holds
// byte k, least significant first, of every sample), then one zstd frame. Lossless for every
// sample type; several times faster to decode than HTJ2K, at a lower compression ratio.
#pragma once
#include <string>

#include "jph_codec.hpp"

namespace dicube {

std::string encode_planes(const ImageView& image, int level);

// Decode into out (shape and type fixed by the caller). Any malformed input, or content of
// another size than out, throws CodecFailure: libzstd checks its input, nothing aborts.
void decode_planes(const uint8_t* data, size_t size, const ImageView& out);

}  // namespace dicube
