// What every CUDA kernel file of the Llama ops shares (the *_kernels.cu and attention_*.cu files): the launch
// shape of grid-stride loops, warp and block reductions, and raising a kernel's dynamic shared memory limit.
// Private to those files (an anonymous namespace: each file gets its own copy).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>

#include "cuda_check.h"
#include "dtype.h"

namespace badam::cuda_llama {
namespace {

constexpr int kThreads = 256;
constexpr unsigned kFullMask = 0xffffffffu;
/** Blocks of kThreads for a grid-stride loop over n elements (capped; the loop covers the rest). */
int blocks_for(size_t n) {
  const size_t b = (n + kThreads - 1) / kThreads;
  return static_cast<int>(std::min<size_t>(std::max<size_t>(b, 1), 65535 * 8));
}

int dt(DType t) { return static_cast<int>(t); }

#define GRID_STRIDE(i, n) \
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < (n); i += static_cast<size_t>(gridDim.x) * blockDim.x)

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

/** Sum over the block (blockDim.x a multiple of 32, at most 1024), returned to every thread. */
__device__ float block_sum(float v) {
  __shared__ float partial[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < static_cast<int>(blockDim.x >> 5) ? partial[lane] : 0.0f;
    v = warp_sum(v);
    if (lane == 0) partial[0] = v;
  }
  __syncthreads();
  const float total = partial[0];
  __syncthreads();  // partial is reused by the next call
  return total;
}

// --- 16-byte accesses: 8 elements of a 16-bit type at a time -------------------------------------------

/** The 16-bit element type of DType `dt` (1 bfloat16, 2 float16). */
template <int DT>
struct Half16;
template <>
struct Half16<1> {
  using type = __nv_bfloat16;
  __device__ static float to_f32(type x) { return __bfloat162float(x); }
  __device__ static type from_f32(float x) { return __float2bfloat16_rn(x); }
};
template <>
struct Half16<2> {
  using type = __half;
  __device__ static float to_f32(type x) { return __half2float(x); }
  __device__ static type from_f32(float x) { return __float2half_rn(x); }
};

/** out[j] = p[i + j] for j < 8, one 16-byte load (i a multiple of 8, p 16-byte aligned). */
template <int DT>
__device__ __forceinline__ void load8(const void* p, size_t i, float (&out)[8]) {
  using T = typename Half16<DT>::type;
  const uint4 raw = *reinterpret_cast<const uint4*>(static_cast<const T*>(p) + i);
  const T* v = reinterpret_cast<const T*>(&raw);
#pragma unroll
  for (int j = 0; j < 8; j++) out[j] = Half16<DT>::to_f32(v[j]);
}

/** p[i + j] = x[j] rounded, one 16-byte store. */
template <int DT>
__device__ __forceinline__ void store8(void* p, size_t i, const float (&x)[8]) {
  using T = typename Half16<DT>::type;
  uint4 raw;
  T* v = reinterpret_cast<T*>(&raw);
#pragma unroll
  for (int j = 0; j < 8; j++) v[j] = Half16<DT>::from_f32(x[j]);
  *reinterpret_cast<uint4*>(static_cast<T*>(p) + i) = raw;
}

/** Whether every pointer is 16-byte aligned (so 8 16-bit elements at a multiple of 8 are one access). */
inline bool all_aligned16(std::initializer_list<const void*> pointers) {
  for (const void* p : pointers) {
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  }
  return true;
}

/** Raises `kernel`'s dynamic shared memory limit to `bytes` when it is past the default 48 KiB. */
template <typename Kernel>
void allow_shared(Kernel kernel, size_t bytes) {
  if (bytes > 48 * 1024) {
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  }
}

}  // namespace
}  // namespace badam::cuda_llama
