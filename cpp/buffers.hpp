// Large output buffers that are reused within a process instead of freshly mapped.
//
// A freshly mapped volume costs the kernel zeroing every page on first touch (about a tenth
// of a full .dcbs load here). Blocks given back are kept (a few, bounded) and handed out
// again; kept blocks are marked MADV_FREE (the kernel may reclaim them under memory
// pressure) and MADV_DONTFORK (a forked child never copies them).
#pragma once
#include <cstddef>

namespace dicube {

// A block of at least `bytes` (2 MiB aligned, transparent huge pages advised), from the
// cache when one of a close size is kept; throws std::bad_alloc when none can be mapped.
void* take_block(size_t bytes, size_t& capacity);

// Give back a block from take_block (of this process: a child unmaps inherited ones).
void give_block(void* block, size_t capacity, long owner_pid);

// Bytes of blocks kept for reuse (for tests).
size_t cached_bytes();

// Release every kept block.
void trim_blocks();

}  // namespace dicube
