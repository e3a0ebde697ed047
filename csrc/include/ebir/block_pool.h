// A process-wide cache of large, 2 MiB-aligned CPU blocks for the ops' outputs (block_pool.cpp).
//
// glibc maps every block above its mmap threshold (at most 32 MiB) afresh and unmaps it on free,
// so each image-batch tensor faulted in and zeroed all of its pages again: ~40% of a degradation
// pipeline's time. Blocks from this pool are mapped once (on transparent huge pages where the
// kernel offers them), handed back when the tensor that owns one dies, and reused by the next
// request of a similar size. What the pool keeps unused is bounded (set_limit; 0 disables it).
#pragma once

#include <cstddef>
#include <cstdint>

namespace ebir {

struct PoolStats {
  size_t cached_bytes = 0, cached_blocks = 0, limit = 0;
  uint64_t hits = 0, misses = 0;
};

// A block of at least `bytes` (rounded up to 2 MiB), contents undefined; *size is its true size,
// to pass back to pool_release. Throws std::bad_alloc when the system has no memory.
void* pool_acquire(size_t bytes, size_t* size);
// Returns the block to the cache, or to the system when the cache would exceed its limit.
void pool_release(void* block, size_t size);
// Unmaps every cached block.
void pool_empty();
void pool_set_limit(size_t bytes);
PoolStats pool_stats();

}  // namespace ebir
