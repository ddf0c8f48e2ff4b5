#include "buffers.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <mutex>
#include <new>
#include <vector>

namespace dicube {
namespace {

constexpr size_t kHuge = size_t(2) << 20;
constexpr size_t kMaxBlocks = 4;
constexpr size_t kMaxKept = size_t(1) << 30;  // bytes kept at most

struct Block {
  void* ptr;
  size_t capacity;
};

std::mutex g_mutex;
std::vector<Block> g_kept;
size_t g_kept_bytes = 0;
pid_t g_owner = 0;

// Kept blocks of the parent are not mapped in a forked child (MADV_DONTFORK): forget them.
void adopt_locked() {
  pid_t pid = getpid();
  if (pid != g_owner) {
    g_kept.clear();
    g_kept_bytes = 0;
    g_owner = pid;
  }
}

void* map_block(size_t capacity) {
  const size_t len = capacity + kHuge;
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  const uintptr_t start = reinterpret_cast<uintptr_t>(p);
  const uintptr_t aligned = (start + kHuge - 1) & ~(kHuge - 1);
  if (aligned > start) munmap(p, aligned - start);
  const size_t tail = start + len - (aligned + capacity);
  if (tail) munmap(reinterpret_cast<void*>(aligned + capacity), tail);
  madvise(reinterpret_cast<void*>(aligned), capacity, MADV_HUGEPAGE);
  return reinterpret_cast<void*>(aligned);
}

}  // namespace

void* take_block(size_t bytes, size_t& capacity) {
  const size_t need = (bytes + kHuge - 1) / kHuge * kHuge;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    adopt_locked();
    // the smallest kept block that fits without wasting more than a quarter of it
    size_t best = g_kept.size();
    for (size_t i = 0; i < g_kept.size(); ++i)
      if (g_kept[i].capacity >= need && g_kept[i].capacity - need <= g_kept[i].capacity / 4 &&
          (best == g_kept.size() || g_kept[i].capacity < g_kept[best].capacity))
        best = i;
    if (best < g_kept.size()) {
      Block b = g_kept[best];
      g_kept.erase(g_kept.begin() + static_cast<std::ptrdiff_t>(best));
      g_kept_bytes -= b.capacity;
      madvise(b.ptr, b.capacity, MADV_DOFORK);  // the caller's array must survive a fork
      capacity = b.capacity;
      return b.ptr;
    }
  }
  capacity = need;
  return map_block(need);
}

void give_block(void* block, size_t capacity, long owner_pid) {
  std::lock_guard<std::mutex> lock(g_mutex);
  adopt_locked();
  // A block inherited from the parent shares its pages copy-on-write: never reuse it here.
  if (owner_pid != static_cast<long>(g_owner) || capacity > kMaxKept) {
    munmap(block, capacity);
    return;
  }
  madvise(block, capacity, MADV_FREE);
  madvise(block, capacity, MADV_DONTFORK);
  g_kept.push_back(Block{block, capacity});
  g_kept_bytes += capacity;
  while (g_kept.size() > kMaxBlocks || g_kept_bytes > kMaxKept) {  // drop the oldest
    munmap(g_kept.front().ptr, g_kept.front().capacity);
    g_kept_bytes -= g_kept.front().capacity;
    g_kept.erase(g_kept.begin());
  }
}

size_t cached_bytes() {
  std::lock_guard<std::mutex> lock(g_mutex);
  adopt_locked();
  return g_kept_bytes;
}

void trim_blocks() {
  std::lock_guard<std::mutex> lock(g_mutex);
  adopt_locked();
  for (const Block& b : g_kept) munmap(b.ptr, b.capacity);
  g_kept.clear();
  g_kept_bytes = 0;
}

}  // namespace dicube
