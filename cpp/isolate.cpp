#include "isolate.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <exception>
#include <new>
#include <string>

#include "errors.hpp"

namespace dicube {
namespace {

struct SharedState {
  volatile size_t frame;
  volatile int status;  // 0 running, 1 done, 2 failed
  char message[512];
};

constexpr size_t kHeader = 4096;  // SharedState, padded so pixels start page-aligned

}  // namespace

void run_isolated(void* out, size_t out_bytes, double timeout_seconds,
                  const std::function<void(void*, volatile size_t*)>& work) {
  const size_t total = kHeader + out_bytes;
  void* mem = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) throw CodecFailure("cannot map shared memory for an isolated decode");
  auto* state = new (mem) SharedState();
  char* pixels = static_cast<char*>(mem) + kHeader;

  pid_t pid = fork();
  if (pid < 0) {
    munmap(mem, total);
    throw CodecFailure("cannot fork a process for an isolated decode");
  }
  if (pid == 0) {
    // Child: no Python here, only the codec; leave with _exit so no atexit handler runs.
    // What glibc prints on heap corruption is reported as the CodecError instead.
    // The parent's fault handlers (Python's faulthandler) must not run here: the default
    // action ends the child, which is what the parent waits for.
    for (int sig : {SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL}) signal(sig, SIG_DFL);
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0) dup2(null, 2);
    try {
      work(pixels, &state->frame);
      state->status = 1;
    } catch (const std::exception& e) {
      std::string msg = describe_openjph_failure(e);
      std::strncpy(state->message, msg.c_str(), sizeof(state->message) - 1);
      state->status = 2;
    } catch (...) {
      std::strncpy(state->message, "unknown failure", sizeof(state->message) - 1);
      state->status = 2;
    }
    _exit(0);
  }

  int wstatus = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_seconds);
  bool timed_out = false;
  while (true) {
    pid_t r = waitpid(pid, &wstatus, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) break;
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &wstatus, 0);
      timed_out = true;
      break;
    }
    struct timespec ts{0, 100000};
    nanosleep(&ts, nullptr);
  }

  const std::string where = "frame " + std::to_string(state->frame) + ": ";
  std::string error;
  if (timed_out)
    error = where + "decoding did not finish within " + std::to_string(static_cast<int>(timeout_seconds)) + " s";
  else if (WIFSIGNALED(wstatus))
    error = where + "the codec library crashed (signal " + std::to_string(WTERMSIG(wstatus)) +
            ") on this codestream: it is corrupt";
  else if (state->status == 2)
    error = where + state->message;
  else if (state->status != 1)
    error = where + "the decoding process ended unexpectedly";
  else
    std::memcpy(out, pixels, out_bytes);
  munmap(mem, total);
  if (!error.empty()) throw CodecFailure(error);
}

}  // namespace dicube
