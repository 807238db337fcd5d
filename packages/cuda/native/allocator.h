// A caching allocator with exact accounting by kind.
//
// Freed blocks go back to a pool keyed by size and are reused by later requests of a similar size, so a
// BAdam block switch (free one layer's masters, gradients and Adam state; allocate the next layer's, of
// the same shapes) costs no cudaMalloc / cudaFree. Accounting: bytes requested and held now, by kind; bytes
// reserved from the device (held + cached); peaks of both. empty_cache() returns cached blocks to the device.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <mutex>
#include <unordered_map>

namespace badam {

enum class MemoryKind : int { Weights = 0, Masters, Gradients, OptimizerState, Activations, Workspace, Other, Count };

const char* memory_kind_name(MemoryKind kind);
MemoryKind memory_kind_from_name(const char* name);

struct MemoryStats {
  size_t in_use[static_cast<int>(MemoryKind::Count)] = {};  // bytes requested by live allocations, by kind
  size_t in_use_total = 0;
  size_t peak_in_use = 0;
  size_t reserved = 0;       // bytes obtained from the device: live blocks (rounded) + cached blocks
  size_t peak_reserved = 0;
  size_t cached = 0;         // bytes in free blocks waiting for reuse
  size_t device_allocations = 0;  // calls to the raw allocator (cudaMalloc), for reuse checks
  size_t live_blocks = 0;
};

class CachingAllocator {
 public:
  using RawAlloc = std::function<void*(size_t)>;
  using RawFree = std::function<void(void*)>;

  CachingAllocator(RawAlloc raw_alloc, RawFree raw_free) : raw_alloc_(std::move(raw_alloc)), raw_free_(std::move(raw_free)) {}
  ~CachingAllocator();
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  /** Memory for `bytes` (> 0) accounted to `kind`; 256-byte aligned. */
  void* allocate(size_t bytes, MemoryKind kind);
  /** Returns a block from allocate() to the pool. */
  void release(void* ptr);
  /** Frees every cached block to the device. */
  void empty_cache();
  MemoryStats stats() const;
  /** Resets both peaks to the current values. */
  void reset_peaks();

  /** Size a request is rounded to: 512 B granules below 1 MiB, 2 MiB granules above. */
  static size_t rounded_size(size_t bytes);

 private:
  struct Block {
    size_t size;       // rounded
    size_t requested;  // exact
    MemoryKind kind;
  };
  RawAlloc raw_alloc_;
  RawFree raw_free_;
  mutable std::mutex mutex_;
  std::unordered_map<void*, Block> live_;
  std::multimap<size_t, void*> free_;  // rounded size -> cached block
  MemoryStats stats_;
};

}  // namespace badam
