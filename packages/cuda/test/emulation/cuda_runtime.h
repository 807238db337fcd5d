// A CUDA emulator just big enough to run the CUDA kernels of the Llama ops (native/*.cu but cuda_device.cu) on a
// CPU, so CI tests the kernels' indexing, tiling, reductions and launches, not only the shared math. It stands
// in for <cuda_runtime.h> (this folder comes first on the include path); test/cuda-emulation.test.ts rewrites
// the two spellings C++ cannot parse (`kernel<<<grid, block, shared, stream>>>(args)` and `extern __shared__`)
// and compiles the files with g++.
//
// Model: the blocks of a launch run one after another; the threads of a block are fibers on one OS thread,
// switched only at __syncthreads, __syncwarp and warp shuffles, which are barriers. As on a GPU, code between
// two barriers may interleave arbitrarily; here each thread runs to its next barrier, the threads that can run
// taken in a fresh pseudo-random order every round (seeded: runs repeat), so code that leans on an order a GPU
// does not promise, such as a missing __syncthreads, shows as wrong results. A thread waiting at a barrier is
// not resumed until the barrier releases it, and a block whose threads all wait at barriers that cannot
// release (a __syncthreads some threads skip) is reported instead of hanging. `__shared__` variables are
// statics (one block at a time owns them) and dynamic shared memory is one buffer, filled with NaN before
// each block so a read of something never written shows. The device's opt-in shared memory limit per block
// is set by the caller (emu::set_shared_memory_optin: 99 KiB for sm_86 / sm_89 cards, 227 KiB for sm_90);
// a launch past a kernel's limit fails as on a GPU. Only what the kernels use is here; the WMMA API of the
// tensor-core attention is in mma.h beside this file.
//
// Fibers switch with a few instructions on x86-64 (callee-saved registers and the stack pointer; no signal
// mask system call as swapcontext makes), with ucontext elsewhere.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

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
constexpr cudaError_t cudaErrorInvalidValue = 1;
constexpr cudaError_t cudaErrorLaunchFailure = 719;
using cudaStream_t = void*;
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize };
enum cudaDeviceAttr { cudaDevAttrMaxSharedMemoryPerBlockOptin = 97, cudaDevAttrMultiProcessorCount = 16 };
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };

#if defined(__x86_64__)
// emu_switch_stack(&from_sp, to_sp): saves the callee-saved registers, the SSE and x87 control words and the
// stack pointer of the running fiber in *from_sp, and resumes the one whose stack pointer is to_sp.
extern "C" void emu_switch_stack(void** from_sp, void* to_sp);
// Every file that includes this header emits it, in a COMDAT group the linker keeps once.
asm(R"(
.section .text.emu_switch_stack,"axG",@progbits,emu_switch_stack,comdat
.weak emu_switch_stack
.type emu_switch_stack, @function
emu_switch_stack:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size emu_switch_stack, .-emu_switch_stack
.text
)");
#endif

namespace emu {

constexpr size_t kStack = 128 * 1024;
constexpr size_t kDefaultSharedLimit = 48 * 1024;

struct Barrier {
  int arrived = 0;
  int first = 0, count = 0;  // the threads that wait at it: [first, first + count)
};

struct Fiber {
#if defined(__x86_64__)
  void* sp = nullptr;
#else
  ucontext_t context;
#endif
  dim3 idx;
  int linear = 0;
  bool done = false;
  const Barrier* waiting = nullptr;  // the barrier this thread waits at, or null when it can run
  unsigned shuffles = 0;             // warp shuffles so far: their parity picks the slot buffer
};

struct State {
  std::vector<Fiber> fibers;
  std::vector<char> stacks;
#if defined(__x86_64__)
  void* scheduler_sp = nullptr;
#else
  ucontext_t scheduler;
#endif
  int current = -1;
  dim3 block_idx, block_dim, grid_dim;
  Barrier block_barrier;
  std::vector<Barrier> warp_barriers;
  std::vector<uint64_t> warp_slots[2];  // 32 per warp, two buffers used in turn (see shuffle)
  std::vector<float> dynamic_shared;
  std::map<const void*, size_t> shared_limits;  // cudaFuncSetAttribute's MaxDynamicSharedMemorySize per kernel
  size_t shared_optin = 227 * 1024;             // the device's opt-in limit per block
  int multiprocessors = 132;
  cudaError_t last_error = cudaSuccess;
  void (*body)(void*) = nullptr;
  void* body_arg = nullptr;
  uint32_t random = 2463534242u;
};

inline State& state() {
  static State s;
  return s;
}

/** The emulated device's opt-in shared memory per block (cudaDevAttrMaxSharedMemoryPerBlockOptin). */
inline void set_shared_memory_optin(size_t bytes) {
  state().shared_optin = bytes;
  state().shared_limits.clear();
}

inline Fiber& current_thread() { return state().fibers[state().current]; }

/** Back to the scheduler; returns when the scheduler resumes this thread. */
inline void yield() {
  State& s = state();
#if defined(__x86_64__)
  emu_switch_stack(&s.fibers[s.current].sp, s.scheduler_sp);
#else
  swapcontext(&s.fibers[s.current].context, &s.scheduler);
#endif
}

/** Waits until `expected` threads have arrived; the last one releases the others. */
inline void barrier_wait(Barrier& b, int expected) {
  State& s = state();
  if (++b.arrived == expected) {
    b.arrived = 0;
    for (int t = b.first; t < b.first + b.count; t++) {
      if (s.fibers[t].waiting == &b) s.fibers[t].waiting = nullptr;
    }
    return;
  }
  s.fibers[s.current].waiting = &b;
  yield();
}

inline void fiber_main() {
  State& s = state();
  s.body(s.body_arg);
  s.fibers[s.current].done = true;
#if defined(__x86_64__)
  void* unused = nullptr;
  emu_switch_stack(&unused, s.scheduler_sp);  // never resumed
#endif
  // ucontext: returning switches to uc_link, the scheduler
}

inline uint32_t next_random(State& s) {
  s.random ^= s.random << 13;
  s.random ^= s.random >> 17;
  s.random ^= s.random << 5;
  return s.random;
}

inline void start_fiber(State& s, Fiber& f, int t) {
  char* stack = s.stacks.data() + static_cast<size_t>(t) * kStack;
#if defined(__x86_64__)
  // A frame as emu_switch_stack leaves it: control words, six registers, then fiber_main as the return
  // address, placed so that fiber_main starts with the stack alignment of a called function.
  auto* top = reinterpret_cast<uint64_t*>(reinterpret_cast<uintptr_t>(stack + kStack) & ~uintptr_t{15});
  uint64_t* sp = top - 9;  // 8 words popped, so fiber_main starts at rsp = top - 1: 8 mod 16, as after a call
  uint32_t control[2];
  asm volatile("stmxcsr %0" : "=m"(control[0]));
  asm volatile("fnstcw %0" : "=m"(control[1]));
  std::memcpy(sp, control, 8);
  for (int r = 1; r <= 6; r++) sp[r] = 0;
  sp[7] = reinterpret_cast<uint64_t>(&fiber_main);
  f.sp = sp;
#else
  getcontext(&f.context);
  f.context.uc_stack.ss_sp = stack;
  f.context.uc_stack.ss_size = kStack;
  f.context.uc_link = &s.scheduler;
  makecontext(&f.context, fiber_main, 0);
#endif
}

/** Runs one block: every thread a fiber, in rounds until all are done. */
inline void run_block(int threads) {
  State& s = state();
  if (threads % 32 != 0) throw std::runtime_error("emulator: blockDim must be a multiple of 32");
  s.fibers.assign(threads, Fiber{});
  if (s.stacks.size() < static_cast<size_t>(threads) * kStack) s.stacks.resize(static_cast<size_t>(threads) * kStack);
  s.block_barrier = Barrier{0, 0, threads};
  s.warp_barriers.assign(threads / 32, Barrier{});
  for (int w = 0; w < threads / 32; w++) s.warp_barriers[w] = Barrier{0, 32 * w, 32};
  s.warp_slots[0].assign(threads, 0);
  s.warp_slots[1].assign(threads, 0);
  for (int t = 0; t < threads; t++) {
    Fiber& f = s.fibers[t];
    f.linear = t;
    f.idx = dim3(t % s.block_dim.x, (t / s.block_dim.x) % s.block_dim.y, t / (s.block_dim.x * s.block_dim.y));
    start_fiber(s, f, t);
  }
  std::vector<int> order;
  order.reserve(threads);
  for (int live = threads; live > 0;) {
    order.clear();
    for (int t = 0; t < threads; t++) {
      if (!s.fibers[t].done && s.fibers[t].waiting == nullptr) order.push_back(t);
    }
    if (order.empty()) {
      throw std::runtime_error("emulator: every live thread of block (" + std::to_string(s.block_idx.x) + ", " +
                               std::to_string(s.block_idx.y) + ", " + std::to_string(s.block_idx.z) +
                               ") waits at a barrier that cannot release: a __syncthreads or warp operation is not reached by every thread");
    }
    for (size_t i = order.size() - 1; i > 0; i--) std::swap(order[i], order[next_random(s) % (i + 1)]);
    for (int t : order) {
      s.current = t;
#if defined(__x86_64__)
      emu_switch_stack(&s.scheduler_sp, s.fibers[t].sp);
#else
      swapcontext(&s.scheduler, &s.fibers[t].context);
#endif
      if (s.fibers[t].done) live--;
    }
  }
  s.current = -1;
}

/**
 * The value `v` of lane `src_lane` of the warp. One barrier per shuffle: each lane writes its value into the
 * buffer of this shuffle's parity and reads the source's after the barrier; the next shuffle uses the other
 * buffer, and the one after it can only overwrite this buffer once every lane has passed the next barrier,
 * hence finished reading here.
 */
template <typename T>
T shuffle(T v, int src_lane) {
  static_assert(sizeof(T) <= sizeof(uint64_t), "shuffle of a scalar");
  State& s = state();
  Fiber& self = current_thread();
  const int t = self.linear, warp = t / 32;
  std::vector<uint64_t>& slots = s.warp_slots[self.shuffles++ & 1];
  std::memcpy(&slots[t], &v, sizeof(T));
  barrier_wait(s.warp_barriers[warp], 32);
  T out;
  std::memcpy(&out, &slots[warp * 32 + (src_lane & 31)], sizeof(T));
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
      s.last_error = cudaErrorInvalidValue;  // as CUDA reports a launch it cannot configure
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

inline const char* cudaGetErrorName(cudaError_t e) {
  return e == cudaErrorInvalidValue ? "cudaErrorInvalidValue (emulated)" : "cudaErrorLaunchFailure (emulated)";
}
inline const char* cudaGetErrorString(cudaError_t e) {
  return e == cudaErrorInvalidValue ? "invalid argument (emulated)" : "emulated launch failure";
}
inline cudaError_t cudaGetLastError() {
  const cudaError_t e = emu::state().last_error;
  emu::state().last_error = cudaSuccess;
  return e;
}
template <typename T>
cudaError_t cudaFuncSetAttribute(T* kernel, cudaFuncAttribute, int bytes) {
  if (bytes < 0 || static_cast<size_t>(bytes) > emu::state().shared_optin) return cudaErrorInvalidValue;
  emu::state().shared_limits[reinterpret_cast<const void*>(kernel)] = static_cast<size_t>(bytes);
  return cudaSuccess;
}
inline cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int) {
  switch (attr) {
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = static_cast<int>(emu::state().shared_optin); return cudaSuccess;
    case cudaDevAttrMultiProcessorCount: *value = emu::state().multiprocessors; return cudaSuccess;
  }
  return cudaErrorInvalidValue;
}
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind, cudaStream_t) {
  std::memcpy(dst, src, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
