#include "errors.hpp"

#include <cstdarg>
#include <cstdio>

#include <ojph_arch.h>
#include <ojph_message.h>

namespace dicube {
namespace {

std::string format_message(int code, const char* fmt, va_list ap) {
  char text[512];
  std::vsnprintf(text, sizeof(text), fmt, ap);
  std::string msg(text);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  char prefix[48];
  std::snprintf(prefix, sizeof(prefix), "OpenJPH error 0x%08X: ", static_cast<unsigned>(code));
  return prefix + msg;
}

class ThrowingError : public ojph::message_error {
 public:
  void operator()(int code, const char* /*file*/, int /*line*/, const char* fmt, ...) override {
    va_list ap;
    va_start(ap, fmt);
    std::string msg = format_message(code, fmt, ap);
    va_end(ap);
    throw CodecFailure(msg);
  }
};

class SilentWarning : public ojph::message_warning {
 public:
  void operator()(int, const char*, int, const char*, ...) override {}
};

class SilentInfo : public ojph::message_info {
 public:
  void operator()(int, const char*, int, const char*, ...) override {}
};

}  // namespace

void install_openjph_handlers() {
  static ThrowingError error;
  static SilentWarning warning;
  static SilentInfo info;
  ojph::configure_error(&error);
  ojph::configure_warning(&warning);
  ojph::configure_info(&info);
}

}  // namespace dicube
