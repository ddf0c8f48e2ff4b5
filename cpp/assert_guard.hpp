// OpenJPH as Debian builds it keeps its assert()s, and crafted code-block bytes (which no
// header check can vet without decoding them) reach some of them: a failed assertion
// aborts the whole interpreter. We redirect OpenJPH's import of __assert_fail to ours:
// inside guard_openjph() a failed assertion jumps back to the guard, which throws
// CodecFailure; anywhere else it aborts as before.
#pragma once
#include <string>
#include <type_traits>

#include "errors.hpp"

namespace dicube {

// OpenJPH's __assert_fail import pointed at our handler (done once, on first call).
// NoAsserts: the library was built without assert()s. Failed: it has them but the import
// could not be rewritten, so any OpenJPH decode of untrusted bytes must be isolated.
enum class AssertGuard { NoAsserts, Installed, Failed };
AssertGuard assert_guard();

// Runs fn(arg); false when an OpenJPH assertion failed inside it (message then in
// assertion_message()). C++ exceptions from fn propagate. Objects created inside fn are
// abandoned (not destroyed) on a failed assertion: keep them outside.
bool call_guarded(void (*fn)(void*), void* arg);
const char* assertion_message();

template <typename Fn>
void guard_openjph(Fn&& fn) {
  auto thunk = [](void* p) { (*static_cast<std::remove_reference_t<Fn>*>(p))(); };
  if (!call_guarded(thunk, &fn))
    throw CodecFailure(std::string("corrupt codestream (OpenJPH internal check failed: ") + assertion_message() + ")");
}

}  // namespace dicube
