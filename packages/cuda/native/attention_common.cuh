// The launchers the attention kernel files (attention_simt.cu, attention_tc.cu) provide to the dispatcher in
// attention.cu. Rows are addressed with llama_reference.h's head_index and the dims' strides.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "dtype.h"
#include "llama_reference.h"

namespace badam::cuda_llama {

/** The fp32 SIMT kernels (attention_simt.cu): any float dtype, head dim <= 128. */
void attention_forward_simt(const void* q, const void* k, const void* v, void* out, float* lse, DType dtype,
                            const ref::AttentionDims& dims, cudaStream_t stream);
void attention_backward_simt(const void* q, const void* k, const void* v, const void* d_out, const float* lse,
                             const float* d_rows, void* dq, void* dk, void* dv, DType dtype,
                             const ref::AttentionDims& dims, cudaStream_t stream);
/** The SIMT kernels' largest dynamic shared memory at `head_dim`. */
size_t attention_simt_shared_bytes(int head_dim);

/**
 * The tensor-core kernels (attention_tc.cu): bf16 / fp16, head dim 64 or 128, 16-byte aligned rows. `key_tile`
 * (64 or 32) is attention_tc_key_tile's answer: the largest walked tile whose kernels all fit in
 * `shared_limit` bytes of shared memory per block, or 0 when none does (or the head dim has no kernels).
 */
int attention_tc_key_tile(int head_dim, size_t shared_limit);
void attention_forward_tc(const void* q, const void* k, const void* v, void* out, float* lse, DType dtype, int key_tile,
                          const ref::AttentionDims& dims, cudaStream_t stream);
/** `partials`: attention_backward_partial_floats(dims, dtype) fp32 elements (null when that is 0). */
void attention_backward_tc(const void* q, const void* k, const void* v, const void* d_out, const float* lse,
                           const float* d_rows, void* dq, void* dk, void* dv, float* partials, DType dtype, int key_tile,
                           const ref::AttentionDims& dims, cudaStream_t stream);

}  // namespace badam::cuda_llama
