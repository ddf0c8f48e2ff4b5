#include "regions.hpp"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "assert_guard.hpp"
#include "codestream.hpp"
#include "crc32c.hpp"
#include "isolate.hpp"
#include "parallel.hpp"
#include "profile.hpp"
#include "zstd_planes.hpp"

namespace dicube {

namespace {

void check_crc(const uint8_t* data, size_t size, const uint32_t* crcs, size_t i) {
  if (crcs != nullptr && crc32c(data, size) != crcs[i])
    throw ChecksumFailure(i, "checksum mismatch in frame " + std::to_string(i));
}

// Once the container's CRC-32C of the whole codestream matched, checking the embedded
// one (over the same bytes but its own marker) again would only cost a pass over the data.
DecodeOptions after_crc(const DecodeOptions& opt, const uint32_t* crcs) {
  DecodeOptions o = opt;
  if (crcs != nullptr) o.verify = false;
  return o;
}

// Whether OpenJPH may decode this codestream in-process: only inside our writer's profile
// (whatever checksum matched: an attacker recomputes those), and only while a failed OpenJPH
// assertion is turned into an error rather than an abort.
bool trusted(const uint8_t* data, size_t size) {
  return assert_guard() != AssertGuard::Failed && in_profile(data, size);
}

void decode_one(FrameCodec codec, const uint8_t* data, size_t size, const ImageView& out, const DecodeOptions& opt) {
  if (codec == FrameCodec::ZSTD_PLANES)
    decode_planes(data, size, out);
  else
    decode_image(data, size, out, opt);
}

}  // namespace

void decode_spans(FrameCodec codec, const std::vector<Span>& spans, const uint32_t* crcs, const ImageView& out,
                  const DecodeOptions& opt, unsigned threads, int isolate) {
  bool isolated = isolate == 1 && codec == FrameCodec::HTJ2K;
  if (isolate == 2 && codec == FrameCodec::HTJ2K)
    for (size_t i = 0; i < spans.size() && !isolated; ++i) isolated = !trusted(spans[i].data, spans[i].size);
  if (isolated) {
    for (size_t i = 0; i < spans.size(); ++i) check_crc(spans[i].data, spans[i].size, crcs, i);
    const size_t total = frame_bytes(out) * spans.size();
    run_isolated(out.data, total, 60.0 + 1e-6 * total, [&](void* shared, volatile size_t* current) {
      ImageView sv = out;
      sv.data = shared;
      for (size_t i = 0; i < spans.size(); ++i) {
        *current = i;
        decode_image(spans[i].data, spans[i].size, frame_at(sv, i), opt);
      }
    });
    return;
  }
  const DecodeOptions checked = after_crc(opt, crcs);
  parallel_for(spans.size(), threads, [&](size_t i) {
    check_crc(spans[i].data, spans[i].size, crcs, i);
    for_frame(i, [&] { decode_one(codec, spans[i].data, spans[i].size, frame_at(out, i), checked); });
  });
}

bool decode_file_regions(FrameCodec codec, int fd, uint64_t base, const std::vector<Region>& regions, const uint32_t* crcs,
                         const ImageView& out, const DecodeOptions& opt, unsigned threads) {
  std::atomic<bool> unverified{false};
  const DecodeOptions checked = after_crc(opt, crcs);
  parallel_for(regions.size(), threads, [&](size_t i) {
    if (unverified.load(std::memory_order_relaxed)) return;
    thread_local std::vector<uint8_t> buf;
    const size_t n = static_cast<size_t>(regions[i].length);
    if (buf.size() < n) buf.resize(n);
    for (size_t done = 0; done < n;) {
      ssize_t got = pread(fd, buf.data() + done, n - done, static_cast<off_t>(base + regions[i].offset + done));
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0)
        throw ReadFailure("cannot read frame " + std::to_string(i) +
                          (got < 0 ? std::string(": ") + std::strerror(errno) : std::string(": file shrank")));
      done += static_cast<size_t>(got);
    }
    check_crc(buf.data(), n, crcs, i);
    if (codec == FrameCodec::HTJ2K && !trusted(buf.data(), n)) {
      unverified = true;
      return;
    }
    for_frame(i, [&] { decode_one(codec, buf.data(), n, frame_at(out, i), checked); });
    if (buf.size() > (size_t(64) << 20)) std::vector<uint8_t>().swap(buf);  // keep no huge frame around
  });
  return !unverified.load();
}

}  // namespace dicube
