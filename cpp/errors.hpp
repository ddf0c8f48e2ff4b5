// Error type of the extension and OpenJPH message handlers that never end the process.
#pragma once
#include <new>
#include <stdexcept>
#include <string>

namespace dicube {

// Any failure in codec work; the bindings turn it into dicube.exceptions.CodecError.
struct CodecFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Values that do not fit the declared precision; turned into CodecError too, with the value named.
struct RangeFailure : CodecFailure {
  using CodecFailure::CodecFailure;
};

// OpenJPH reports errors through global handlers whose default prints to stderr and
// throws std::runtime_error("ojph error"). We install handlers that throw CodecFailure with
// the message, and, because OpenJPH 0.9's configure_* functions do nothing, we also point
// its message streams at a sink that keeps each thread's messages for that thread.
// Called once when the module is imported.
void install_openjph_handlers();

// Forget this thread's captured OpenJPH messages (call before codec work).
void clear_openjph_message();

// The reason for a failure thrown out of OpenJPH: its captured message when the
// exception itself says nothing more than "ojph error".
std::string describe_openjph_failure(const std::exception& e);

// Run fn() as the codec work on frame i: OpenJPH's failures and running out of memory
// become a CodecFailure naming the frame.
template <typename Fn>
void for_frame(size_t i, Fn fn) {
  clear_openjph_message();
  try {
    fn();
  } catch (const std::bad_alloc&) {
    throw CodecFailure("frame " + std::to_string(i) + ": out of memory");
  } catch (const std::exception& e) {
    throw CodecFailure("frame " + std::to_string(i) + ": " + describe_openjph_failure(e));
  }
}

}  // namespace dicube
