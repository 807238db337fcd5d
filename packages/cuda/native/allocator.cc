#include "allocator.h"

#include <cstring>
#include <stdexcept>
#include <string>

namespace badam {

namespace {
const char* const kKindNames[] = {"weights", "masters", "gradients", "optimizerState", "activations", "workspace", "other"};
}

const char* memory_kind_name(MemoryKind kind) { return kKindNames[static_cast<int>(kind)]; }

MemoryKind memory_kind_from_name(const char* name) {
  for (int i = 0; i < static_cast<int>(MemoryKind::Count); i++) {
    if (std::strcmp(name, kKindNames[i]) == 0) return static_cast<MemoryKind>(i);
  }
  throw std::invalid_argument(std::string("memory kind must be weights, masters, gradients, optimizerState, activations, workspace or other, got ") + name);
}

size_t CachingAllocator::rounded_size(size_t bytes) {
  constexpr size_t kSmall = 512, kLarge = 2u << 20, kSmallLimit = 1u << 20;
  if (bytes <= kSmallLimit) return (bytes + kSmall - 1) / kSmall * kSmall;
  return (bytes + kLarge - 1) / kLarge * kLarge;
}

CachingAllocator::~CachingAllocator() {
  for (auto& [ptr, block] : live_) raw_free_(ptr);
  for (auto& [size, ptr] : free_) raw_free_(ptr);
}

void* CachingAllocator::allocate(size_t bytes, MemoryKind kind) {
  if (bytes == 0) throw std::invalid_argument("allocate: 0 bytes");
  const size_t size = rounded_size(bytes);
  std::lock_guard<std::mutex> lock(mutex_);
  void* ptr = nullptr;
  // Reuse a cached block of the same rounded size, or of a larger one if it wastes at most a quarter.
  auto it = free_.lower_bound(size);
  if (it != free_.end() && it->first <= size + size / 4) {
    ptr = it->second;
    const size_t cached_size = it->first;
    free_.erase(it);
    stats_.cached -= cached_size;
    live_[ptr] = Block{cached_size, bytes, kind};
  } else {
    ptr = raw_alloc_(size);
    if (ptr == nullptr) {
      // Out of memory: give the cache back and try once more, as PyTorch's allocator does.
      for (auto& [s, p] : free_) raw_free_(p);
      stats_.reserved -= stats_.cached;
      stats_.cached = 0;
      free_.clear();
      ptr = raw_alloc_(size);
      if (ptr == nullptr) {
        throw std::runtime_error("out of device memory allocating " + std::to_string(bytes) + " bytes for " + memory_kind_name(kind) +
                                 " (" + std::to_string(stats_.in_use_total) + " bytes in use): use a smaller model, batch or block");
      }
    }
    stats_.device_allocations += 1;
    stats_.reserved += size;
    live_[ptr] = Block{size, bytes, kind};
  }
  stats_.in_use[static_cast<int>(kind)] += bytes;
  stats_.in_use_total += bytes;
  stats_.live_blocks += 1;
  if (stats_.in_use_total > stats_.peak_in_use) stats_.peak_in_use = stats_.in_use_total;
  if (stats_.reserved > stats_.peak_reserved) stats_.peak_reserved = stats_.reserved;
  return ptr;
}

void CachingAllocator::release(void* ptr) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = live_.find(ptr);
  if (it == live_.end()) throw std::invalid_argument("release: pointer not from this allocator (double free?)");
  const Block block = it->second;
  live_.erase(it);
  stats_.in_use[static_cast<int>(block.kind)] -= block.requested;
  stats_.in_use_total -= block.requested;
  stats_.live_blocks -= 1;
  free_.emplace(block.size, ptr);
  stats_.cached += block.size;
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& [size, ptr] : free_) raw_free_(ptr);
  stats_.reserved -= stats_.cached;
  stats_.cached = 0;
  free_.clear();
}

MemoryStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void CachingAllocator::reset_peaks() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.peak_in_use = stats_.in_use_total;
  stats_.peak_reserved = stats_.reserved;
}

}  // namespace badam
