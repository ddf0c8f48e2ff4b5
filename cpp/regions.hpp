// Decoding many frames held at byte ranges of one buffer or one open file, on worker threads.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "errors.hpp"
#include "jph_codec.hpp"

namespace dicube {

// A frame's stored bytes did not match its CRC-32C from the container's frame index.
struct ChecksumFailure : CodecFailure {
  size_t frame;
  ChecksumFailure(size_t f, const std::string& what) : CodecFailure(what), frame(f) {}
};
// The file could not be read (I/O error, or it became shorter than its frame index says).
struct ReadFailure : CodecFailure {
  using CodecFailure::CodecFailure;
};

// Frame codecs of the .dcbs container (values as in its header).
enum class FrameCodec : int { HTJ2K = 1, ZSTD_PLANES = 3 };

struct Span {
  const uint8_t* data;
  size_t size;
};
struct Region {
  uint64_t offset, length;
};

// Decode frames into consecutive images of `out`. When `crcs` is given, each frame's
// CRC-32C is checked before decoding. isolate (HTJ2K): 0 never, 1 always, 2 when some
// codestream is outside our writer's profile (profile.hpp), whatever its checksums say.
void decode_spans(FrameCodec codec, const std::vector<Span>& spans, const uint32_t* crcs, const ImageView& out,
                  const DecodeOptions& opt, unsigned threads, int isolate);

// The same for regions of an open file at `base` + offset: each worker reads its frame with
// pread into a buffer it reuses. Returns false, having decoded nothing further, when an
// HTJ2K codestream is outside our writer's profile: the caller then decodes from a buffer
// with isolation, which this path cannot offer.
bool decode_file_regions(FrameCodec codec, int fd, uint64_t base, const std::vector<Region>& regions, const uint32_t* crcs,
                         const ImageView& out, const DecodeOptions& opt, unsigned threads);

}  // namespace dicube
