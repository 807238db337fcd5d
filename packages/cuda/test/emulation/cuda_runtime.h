// A CUDA emulator just big enough to run native/llama_kernels.cu on a CPU, so CI tests the kernels' indexing,
// tiling, reductions and launches, not only the shared math. It stands in for <cuda_runtime.h> (this folder
// comes first on the include path); test/cuda-emulation.test.ts rewrites the two spellings C++ cannot parse
// (`kernel<<<grid, block, shared, stream>>>(args)` and `extern __shared__`) and compiles the file with g++.
//
// Model: the blocks of a launch run one after another; the threads of a block are fibers (ucontext) on one OS
// thread, switched only at __syncthreads and warp shuffles, which are barriers — as on a GPU, code between two
// of them may interleave arbitrarily; here each thread runs to its next barrier, in a shuffled order. `__shared__` variables are statics
// (one block at a time owns them) and dynamic shared memory is one buffer, filled with NaN before each block
// so a read of something never written shows. Only what llama_kernels.cu uses is here; the WMMA API of its
// tensor-core attention is in mma.h beside this file.
#pragma once

#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <stdexcept>
#include <tuple>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __restrict__
#define __launch_bounds__(...)

struct uint4 {
  unsigned x, y, z, w;
};
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

using cudaError_t = int;
constexpr cudaError_t cudaSuccess = 0;
using cudaStream_t = void*;
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize };
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };

namespace emu {

constexpr size_t kStack = 128 * 1024;
constexpr size_t kDefaultSharedLimit = 48 * 1024;

struct Barrier {
  int arrived = 0;
  unsigned generation = 0;
};

struct Fiber {
  ucontext_t context;
  dim3 idx;
  int linear = 0;
  bool done = false;
};

struct State {
  std::vector<Fiber> fibers;
  std::vector<char> stacks;
  ucontext_t scheduler;
  int current = -1;
  dim3 block_idx, block_dim, grid_dim;
  Barrier block_barrier;
  std::vector<Barrier> warp_barriers;
  std::vector<uint64_t> warp_slots;  // 32 per warp
  std::vector<float> dynamic_shared;
  std::map<const void*, size_t> shared_limits;  // cudaFuncSetAttribute's MaxDynamicSharedMemorySize per kernel
  cudaError_t last_error = cudaSuccess;
  void (*body)(void*) = nullptr;
  void* body_arg = nullptr;
  uint32_t random = 2463534242u;
};

inline State& state() {
  static State s;
  return s;
}

inline Fiber& current_thread() { return state().fibers[state().current]; }

inline void yield() {
  State& s = state();
  swapcontext(&s.fibers[s.current].context, &s.scheduler);
}

inline void barrier_wait(Barrier& b, int expected) {
  const unsigned generation = b.generation;
  if (++b.arrived == expected) {
    b.arrived = 0;
    b.generation++;
    return;
  }
  while (b.generation == generation) yield();
}

inline void fiber_entry() {
  State& s = state();
  s.body(s.body_arg);
  s.fibers[s.current].done = true;
  // returning switches to uc_link, the scheduler
}

inline uint32_t next_random(State& s) {
  s.random ^= s.random << 13;
  s.random ^= s.random >> 17;
  s.random ^= s.random << 5;
  return s.random;
}

/** Runs one block: every thread a fiber, in rounds until all are done. */
inline void run_block(int threads) {
  State& s = state();
  if (threads % 32 != 0) throw std::runtime_error("emulator: blockDim must be a multiple of 32");
  s.fibers.assign(threads, Fiber{});
  if (s.stacks.size() < static_cast<size_t>(threads) * kStack) s.stacks.resize(static_cast<size_t>(threads) * kStack);
  s.block_barrier = Barrier{};
  s.warp_barriers.assign(threads / 32, Barrier{});
  s.warp_slots.assign(threads, 0);
  for (int t = 0; t < threads; t++) {
    Fiber& f = s.fibers[t];
    f.linear = t;
    f.idx = dim3(t % s.block_dim.x, (t / s.block_dim.x) % s.block_dim.y, t / (s.block_dim.x * s.block_dim.y));
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = s.stacks.data() + static_cast<size_t>(t) * kStack;
    f.context.uc_stack.ss_size = kStack;
    f.context.uc_link = &s.scheduler;
    makecontext(&f.context, fiber_entry, 0);
  }
  // Each round runs the live threads in a fresh pseudo-random order (seeded: runs repeat), so code that
  // leans on an order a GPU does not promise, such as a missing __syncthreads, shows as wrong results.
  std::vector<int> order(threads);
  for (int t = 0; t < threads; t++) order[t] = t;
  for (int remaining = threads; remaining > 0;) {
    remaining = 0;
    for (int t = threads - 1; t > 0; t--) std::swap(order[t], order[next_random(s) % (t + 1)]);
    for (int t : order) {
      if (s.fibers[t].done) continue;
      s.current = t;
      swapcontext(&s.scheduler, &s.fibers[t].context);
      if (!s.fibers[t].done) remaining++;
    }
  }
  s.current = -1;
}

template <typename T>
T shuffle(T v, int src_lane) {
  static_assert(sizeof(T) <= sizeof(uint64_t), "shuffle of a scalar");
  State& s = state();
  const int t = current_thread().linear, warp = t / 32;
  std::memcpy(&s.warp_slots[t], &v, sizeof(T));
  barrier_wait(s.warp_barriers[warp], 32);
  T out;
  std::memcpy(&out, &s.warp_slots[warp * 32 + (src_lane & 31)], sizeof(T));
  barrier_wait(s.warp_barriers[warp], 32);
  return out;
}

/** `kernel<<<grid, block, shared, stream>>>(args...)` is rewritten as `emu::launcher(kernel, grid, block, shared, stream)(args...)`. */
template <typename... P>
struct Launch {
  void (*kernel)(P...);
  dim3 grid, block;
  size_t shared_bytes;

  template <typename... A>
  void operator()(A... args) const {
    State& s = state();
    const auto set = s.shared_limits.find(reinterpret_cast<const void*>(kernel));
    const size_t limit = set == s.shared_limits.end() ? kDefaultSharedLimit : set->second;
    // As CUDA: an empty grid or block is cudaErrorInvalidConfiguration, as is a grid's y or z past 65535.
    const bool empty = grid.x == 0 || grid.y == 0 || grid.z == 0 || block.x * block.y * block.z == 0;
    if (empty || shared_bytes > limit || block.x * block.y * block.z > 1024 || grid.y > 65535 || grid.z > 65535) {
      s.last_error = 1;  // what CUDA reports as a launch failure
      return;
    }
    struct Bound {
      void (*kernel)(P...);
      std::tuple<A...> args;
    } bound{kernel, std::tuple<A...>(args...)};
    s.body = [](void* p) {
      auto* b = static_cast<Bound*>(p);
      std::apply([b](auto... a) { b->kernel(a...); }, b->args);
    };
    s.body_arg = &bound;
    s.grid_dim = grid;
    s.block_dim = block;
    for (unsigned z = 0; z < grid.z; z++)
      for (unsigned y = 0; y < grid.y; y++)
        for (unsigned x = 0; x < grid.x; x++) {
          s.block_idx = dim3(x, y, z);
          s.dynamic_shared.assign(shared_bytes / sizeof(float) + 1, std::numeric_limits<float>::quiet_NaN());
          run_block(static_cast<int>(block.x * block.y * block.z));
        }
  }
};

template <typename... P>
Launch<P...> launcher(void (*kernel)(P...), dim3 grid, dim3 block, size_t shared_bytes = 0, cudaStream_t = nullptr) {
  return Launch<P...>{kernel, grid, block, shared_bytes};
}

inline float* dynamic_shared() { return state().dynamic_shared.data(); }

}  // namespace emu

#define threadIdx (emu::current_thread().idx)
#define blockIdx (emu::state().block_idx)
#define blockDim (emu::state().block_dim)
#define gridDim (emu::state().grid_dim)

inline void __syncthreads() {
  emu::State& s = emu::state();
  emu::barrier_wait(s.block_barrier, static_cast<int>(s.fibers.size()));
}

/** The warp's barrier: what one lane stored before it, the others may read after it. */
inline void __syncwarp(unsigned = 0xffffffffu) {
  emu::State& s = emu::state();
  emu::barrier_wait(s.warp_barriers[emu::current_thread().linear / 32], 32);
}

template <typename T>
T __shfl_sync(unsigned, T v, int src_lane) {
  return emu::shuffle(v, src_lane);
}

template <typename T>
T __shfl_xor_sync(unsigned, T v, int lane_mask) {
  return emu::shuffle(v, (emu::current_thread().linear & 31) ^ lane_mask);
}

inline float atomicAdd(float* p, float v) {  // fibers never switch inside: atomic
  const float old = *p;
  *p = old + v;
  return old;
}

inline float __int_as_float(int i) {
  float f;
  std::memcpy(&f, &i, 4);
  return f;
}

using std::max;
using std::min;

inline const char* cudaGetErrorName(cudaError_t) { return "cudaErrorLaunchFailure (emulated)"; }
inline const char* cudaGetErrorString(cudaError_t) { return "emulated launch failure"; }
inline cudaError_t cudaGetLastError() {
  const cudaError_t e = emu::state().last_error;
  emu::state().last_error = cudaSuccess;
  return e;
}
template <typename T>
cudaError_t cudaFuncSetAttribute(T* kernel, cudaFuncAttribute, int bytes) {
  // The A100's opt-in limit per block (the H100's is 227 KiB): what must fit on both.
  if (bytes > 163 * 1024) return 1;
  emu::state().shared_limits[reinterpret_cast<const void*>(kernel)] = static_cast<size_t>(bytes);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind, cudaStream_t) {
  std::memcpy(dst, src, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
