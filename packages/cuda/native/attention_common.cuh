// What the attention kernel files share (attention.cu, attention_simt.cu, attention_tc.cu): the layout of a
// head in a token row, and the launchers each path provides to the dispatcher in attention.cu.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "dtype.h"
#include "llama_reference.h"

namespace badam::cuda_llama {

/** Index of element i of head h of token (b, s) in a [N, heads * head_dim] tensor. */
__device__ __forceinline__ size_t head_at(const ref::AttentionDims& d, int b, int s, int heads, int h, int i) {
  return ((static_cast<size_t>(b) * d.seq_len + s) * heads + h) * d.head_dim + i;
}

/** The fp32 SIMT kernels (attention_simt.cu): any float dtype, head dim <= 128. */
void attention_forward_simt(const void* q, const void* k, const void* v, void* out, float* lse, DType dtype,
                            const ref::AttentionDims& dims, cudaStream_t stream);
void attention_backward_simt(const void* q, const void* k, const void* v, const void* d_out, const float* lse,
                             const float* d_rows, void* dq, void* dk, void* dv, DType dtype,
                             const ref::AttentionDims& dims, cudaStream_t stream);

/** The tensor-core kernels (attention_tc.cu): bf16 / fp16, head dim 64 or 128, 16-byte aligned tensors. */
void attention_forward_tc(const void* q, const void* k, const void* v, void* out, float* lse, DType dtype,
                          const ref::AttentionDims& dims, cudaStream_t stream);
void attention_backward_tc(const void* q, const void* k, const void* v, const void* d_out, const float* lse,
                           const float* d_rows, void* dq, void* dk, void* dv, DType dtype,
                           const ref::AttentionDims& dims, cudaStream_t stream);

}  // namespace badam::cuda_llama
