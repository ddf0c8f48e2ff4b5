// Run decoding in a forked child process, so that a crash inside the codec library
// (Debian's OpenJPH 0.9 keeps its assert()s, which abort on some corrupt codestreams)
// becomes a CodecFailure instead of ending the interpreter.
#pragma once
#include <cstddef>
#include <functional>

namespace dicube {

// work(out, frame) fills `out` (out_bytes) and updates *frame with the index being
// decoded. It runs in a child process writing to shared memory; the result is copied
// into `out` when the child succeeds. A crash, an error or a run over timeout_seconds
// throws CodecFailure naming the frame.
void run_isolated(void* out, size_t out_bytes, double timeout_seconds,
                  const std::function<void(void* out, volatile size_t* frame)>& work);

}  // namespace dicube
