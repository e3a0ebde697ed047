// The CPU block cache of ebir/block_pool.h. Blocks are anonymous mappings aligned to 2 MiB and
// advised onto huge pages, so a first use faults in 512x fewer pages; the cache reuses the
// smallest block that fits within 25% (a batch's sizes vary with its random resizes) and, when
// over its limit, unmaps the blocks released longest ago first.
#include "ebir/block_pool.h"

#include <algorithm>
#include <mutex>
#include <new>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#include <sys/mman.h>
#define EBIR_POOL_MMAP 1
#else
#include <cstdlib>
#endif

namespace ebir {
namespace {

constexpr size_t kHuge = size_t(1) << 21;

struct Cached {
  void* block;
  size_t size;
  uint64_t released;  // release order, for oldest-first eviction
};

struct Pool {
  std::mutex mu;
  std::vector<Cached> free;
  size_t cached = 0, limit = size_t(1) << 30;
  uint64_t clock = 0, hits = 0, misses = 0;
};

Pool& pool() {
  // Never destroyed: tensors that own blocks may outlive static destruction at exit.
  static Pool* p = [] {
    Pool* q = new Pool;
#if defined(EBIR_POOL_MMAP)
    // A child forked while another thread held the lock would deadlock on it; the child's copy
    // of the cached mappings stays valid, so only the lock is made anew.
    pthread_atfork(nullptr, nullptr, [] { new (&pool().mu) std::mutex(); });
#endif
    return q;
  }();
  return *p;
}

void* map_block(size_t size) {
#if defined(EBIR_POOL_MMAP)
  // Over-map by 2 MiB and trim, so the block starts on a huge-page boundary.
  void* raw = mmap(nullptr, size + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  const uintptr_t start = (uintptr_t(raw) + kHuge - 1) & ~(kHuge - 1);
  const size_t head = start - uintptr_t(raw), tail = kHuge - head;
  if (head > 0) munmap(raw, head);
  if (tail > 0) munmap(reinterpret_cast<void*>(start + size), tail);
#if defined(MADV_HUGEPAGE)
  madvise(reinterpret_cast<void*>(start), size, MADV_HUGEPAGE);
#endif
  return reinterpret_cast<void*>(start);
#else
  void* p = std::aligned_alloc(kHuge, size);
  if (p == nullptr) throw std::bad_alloc();
  return p;
#endif
}

void unmap_block(void* block, size_t size) {
#if defined(EBIR_POOL_MMAP)
  munmap(block, size);
#else
  (void)size;
  std::free(block);
#endif
}

// Evicts oldest-released blocks until `need` more bytes fit under the limit; returns them so the
// caller unmaps outside the lock.
std::vector<Cached> evict_for(Pool& p, size_t need) {
  std::vector<Cached> out;
  while (!p.free.empty() && p.cached + need > p.limit) {
    auto oldest = std::min_element(p.free.begin(), p.free.end(),
                                   [](const Cached& a, const Cached& b) { return a.released < b.released; });
    p.cached -= oldest->size;
    out.push_back(*oldest);
    p.free.erase(oldest);
  }
  return out;
}

}  // namespace

void* pool_acquire(size_t bytes, size_t* size) {
  const size_t need = std::max(kHuge, (bytes + kHuge - 1) & ~(kHuge - 1));
  Pool& p = pool();
  {
    std::lock_guard<std::mutex> lock(p.mu);
    auto best = p.free.end();
    for (auto it = p.free.begin(); it != p.free.end(); ++it)
      if (it->size >= need && it->size <= need + need / 4 &&
          (best == p.free.end() || it->size < best->size))
        best = it;
    if (best != p.free.end()) {
      void* block = best->block;
      *size = best->size;
      p.cached -= best->size;
      p.free.erase(best);
      ++p.hits;
      return block;
    }
    ++p.misses;
  }
  *size = need;
  return map_block(need);
}

void pool_release(void* block, size_t size) {
  Pool& p = pool();
  std::vector<Cached> evicted;
  bool keep = false;
  {
    std::lock_guard<std::mutex> lock(p.mu);
    if (size <= p.limit) {
      evicted = evict_for(p, size);
      p.free.push_back({block, size, ++p.clock});
      p.cached += size;
      keep = true;
    }
  }
  for (const Cached& c : evicted) unmap_block(c.block, c.size);
  if (!keep) unmap_block(block, size);
}

void pool_empty() {
  Pool& p = pool();
  std::vector<Cached> all;
  {
    std::lock_guard<std::mutex> lock(p.mu);
    all.swap(p.free);
    p.cached = 0;
  }
  for (const Cached& c : all) unmap_block(c.block, c.size);
}

void pool_set_limit(size_t bytes) {
  Pool& p = pool();
  std::vector<Cached> evicted;
  {
    std::lock_guard<std::mutex> lock(p.mu);
    p.limit = bytes;
    evicted = evict_for(p, 0);
  }
  for (const Cached& c : evicted) unmap_block(c.block, c.size);
}

PoolStats pool_stats() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  PoolStats s;
  s.cached_bytes = p.cached;
  s.cached_blocks = p.free.size();
  s.limit = p.limit;
  s.hits = p.hits;
  s.misses = p.misses;
  return s;
}

}  // namespace ebir
