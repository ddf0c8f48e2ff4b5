#include "errors.hpp"

#include <cstdarg>
#include <cstdio>
#include <cstring>

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

thread_local std::string t_messages;

ssize_t capture_write(void*, const char* buf, size_t n) {
  t_messages.append(buf, n);
  if (t_messages.size() > 8192) t_messages.erase(0, t_messages.size() - 4096);
  return static_cast<ssize_t>(n);
}

// Unbuffered, so each fprintf reaches capture_write in the thread that made it.
FILE* capture_stream() {
  static FILE* stream = [] {
    cookie_io_functions_t io{};
    io.write = capture_write;
    FILE* f = fopencookie(nullptr, "w", io);
    if (f) setvbuf(f, nullptr, _IONBF, 0);
    return f;
  }();
  return stream;
}

}  // namespace

void clear_openjph_message() { t_messages.clear(); }

std::string describe_openjph_failure(const std::exception& e) {
  if (std::strcmp(e.what(), "ojph error") != 0) return e.what();
  // Last non-empty line of what OpenJPH printed, e.g. "ojph error 0x... at file:line: text"
  std::string text = t_messages;
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  size_t nl = text.rfind('\n');
  std::string line = nl == std::string::npos ? text : text.substr(nl + 1);
  size_t colon = line.find(": ");
  if (line.rfind("ojph error", 0) == 0 && colon != std::string::npos)
    return "OpenJPH error: " + line.substr(colon + 2);
  return line.empty() ? std::string("OpenJPH error") : "OpenJPH error: " + line;
}

void install_openjph_handlers() {
  static ThrowingError error;
  static SilentWarning warning;
  static SilentInfo info;
  ojph::configure_error(&error);
  ojph::configure_warning(&warning);
  ojph::configure_info(&info);
  if (FILE* sink = capture_stream()) {
    ojph::set_error_stream(sink);
    ojph::set_warning_stream(sink);
    ojph::set_info_stream(sink);
  }
}

}  // namespace dicube
