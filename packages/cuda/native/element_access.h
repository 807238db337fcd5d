// Loads and stores of tensor elements as fp32, shared by the CPU references (g++) and the CUDA kernels
// (nvcc): a kernel and its reference read and round the same way, so the GPU's only untested code is its
// launch and indexing. The dtype is badam::DType as an int (0 float32, 1 bfloat16, 2 float16, 3 int32), so
// kernels take it as a plain argument; every conversion from fp32 rounds to nearest even.
#pragma once

#include <cstddef>
#include <cstdint>

#include "dtype.h"

#ifdef __CUDACC__
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#define BADAM_HD __host__ __device__
#else
#define BADAM_HD
#endif

namespace badam {

/** Element `i` of a buffer of dtype `dtype`, as fp32. */
BADAM_HD inline float load_f32(const void* p, int dtype, size_t i) {
#ifdef __CUDA_ARCH__
  switch (dtype) {
    case 1: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    case 2: return __half2float(static_cast<const __half*>(p)[i]);
    case 3: return static_cast<float>(static_cast<const int32_t*>(p)[i]);
    default: return static_cast<const float*>(p)[i];
  }
#else
  return load_as_f32(p, static_cast<DType>(dtype), i);
#endif
}

/** Stores fp32 `x` as element `i` of a buffer of dtype `dtype`, rounding to nearest even. */
BADAM_HD inline void store_f32(void* p, int dtype, size_t i, float x) {
#ifdef __CUDA_ARCH__
  switch (dtype) {
    case 1: static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(x); break;
    case 2: static_cast<__half*>(p)[i] = __float2half_rn(x); break;
    case 3: static_cast<int32_t*>(p)[i] = static_cast<int32_t>(x); break;
    default: static_cast<float*>(p)[i] = x;
  }
#else
  store_from_f32(p, static_cast<DType>(dtype), i, x);
#endif
}

/** fp32 `x` rounded to what dtype `dtype` holds, returned as fp32 (HF's `.to(input_dtype)`). */
BADAM_HD inline float round_to_dtype(int dtype, float x) {
#ifdef __CUDA_ARCH__
  if (dtype == 1) return __bfloat162float(__float2bfloat16_rn(x));
  if (dtype == 2) return __half2float(__float2half_rn(x));
  return x;
#else
  return round_to(static_cast<DType>(dtype), x);
#endif
}

}  // namespace badam
