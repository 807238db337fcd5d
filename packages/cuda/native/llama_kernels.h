// Launchers of the Llama kernels on a CUDA stream (the *_kernels.cu and attention*.cu files), one per Device
// method, with the CPU reference's arguments (llama_reference.h) plus the stream and any device workspace.
// Included by nvcc-compiled files only.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "dtype.h"
#include "llama_reference.h"

namespace badam::cuda_llama {

void embedding(const void* table, DType table_dtype, const int32_t* ids, void* out, DType out_dtype, size_t n,
               size_t vocab, size_t hidden, cudaStream_t stream);
void embedding_backward(const void* d_out, DType d_out_dtype, const int32_t* ids, float* d_table, size_t n,
                        size_t vocab, size_t hidden, cudaStream_t stream);
void rms_norm(const void* x, DType x_dtype, const void* weight, DType w_dtype, void* out, DType out_dtype, float* rstd,
              size_t n, size_t hidden, float eps, cudaStream_t stream);
void add_rms_norm(const void* x, const void* delta, void* sum, DType dtype, const void* weight, DType w_dtype, void* out,
                  float* rstd, size_t n, size_t hidden, float eps, cudaStream_t stream);
/** `workspace`: column_sum_workspace(n, hidden) floats when d_weight is given. */
void rms_norm_backward(const void* d_out, DType d_out_dtype, const void* x, DType x_dtype, const void* weight,
                       DType w_dtype, const float* rstd, void* dx, DType dx_dtype, float* d_weight, size_t n,
                       size_t hidden, bool accumulate_dx, float* workspace, cudaStream_t stream);
void rope(void* x, DType dtype, const float* cos, const float* sin, size_t n, int seq_len, int heads, int head_dim,
          bool inverse, size_t row_stride, cudaStream_t stream);
/**
 * Attention and its backward run the tensor-core (WMMA) kernels for bf16 / fp16 at head dim 64 or 128 with
 * 16-byte aligned rows, with the largest key tile the device's opt-in shared memory holds; the fp32 SIMT
 * kernels otherwise (attention.cu). BADAM_ATTENTION in the environment (read at every call): simt forces
 * SIMT, tc32 the tensor cores' 32-key tiles, auto or unset picks; any other value throws
 * std::invalid_argument. `partials`: attention_backward_partial_floats(dims, dtype) fp32 elements.
 */
void attention(const void* q, const void* k, const void* v, void* out, float* lse, DType dtype,
               const ref::AttentionDims& dims, cudaStream_t stream);
void attention_backward(const void* q, const void* k, const void* v, const void* out, const void* d_out,
                        const float* lse, void* dq, void* dk, void* dv, float* d_rows, float* partials, DType dtype,
                        const ref::AttentionDims& dims, cudaStream_t stream);
void swiglu(const void* gate_up, DType gate_up_dtype, void* out, DType out_dtype, size_t rows, size_t inter,
            cudaStream_t stream);
void swiglu_backward(const void* gate_up, DType gate_up_dtype, const void* d_out, DType d_out_dtype, void* d_gate_up,
                     DType d_gate_up_dtype, size_t rows, size_t inter, cudaStream_t stream);
void add(const void* a, DType a_dtype, const void* b, DType b_dtype, void* out, DType out_dtype, size_t n,
         cudaStream_t stream);
void add_bias(void* x, DType x_dtype, const void* bias, DType bias_dtype, size_t n, size_t channels, cudaStream_t stream);
/** `workspace`: column_sum_workspace(rows, channels) floats. */
void bias_backward(const void* d_out, DType d_out_dtype, float* d_bias, size_t rows, size_t channels, size_t row_stride,
                   float* workspace, cudaStream_t stream);
void cross_entropy(void* logits, DType dtype, const int32_t* labels, float* losses, size_t rows, size_t vocab,
                   float grad_scale, cudaStream_t stream);
void argmax_rows(const void* x, DType dtype, int32_t* out, size_t rows, size_t cols, cudaStream_t stream);
/** Sum in double, deterministic: `partials` is a device buffer of partial_count + 1 doubles. Synchronises. */
double sum(const void* x, DType dtype, size_t n, double* partials, int partial_count, cudaStream_t stream);

}  // namespace badam::cuda_llama
