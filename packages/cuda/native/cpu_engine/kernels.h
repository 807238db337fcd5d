// The CPU engine's kernels other than the GEMM, as one table per instruction set: the same algorithms (tiled,
// multithreaded on the engine's pool) compiled twice, once with portable C++ (kernels_generic.cc) and once
// with AVX-512 (kernels_avx512.cc); kernels_impl.h holds them, the two files the row primitives they use.
// Semantics and shapes are the references' (llama_reference.h, reference.h); every kernel is tested against
// its reference on both tables.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../dtype.h"
#include "../llama_reference.h"
#include "../reference.h"

namespace badam::engine {

struct KernelTable {
  const char* name;
  void (*embedding)(const void* table, DType table_dtype, const int32_t* ids, void* out, DType out_dtype, size_t n,
                    size_t vocab, size_t hidden);
  void (*embedding_backward)(const void* d_out, DType d_out_dtype, const int32_t* ids, float* d_table, size_t n,
                             size_t vocab, size_t hidden);
  void (*rms_norm)(const void* x, DType x_dtype, const void* weight, DType w_dtype, void* out, DType out_dtype,
                   float* rstd, size_t n, size_t hidden, float eps);
  void (*add_rms_norm)(const void* x, const void* delta, void* sum, DType dtype, const void* weight, DType w_dtype,
                       void* out, float* rstd, size_t n, size_t hidden, float eps);
  void (*rms_norm_backward)(const void* d_out, DType d_out_dtype, const void* x, DType x_dtype, const void* weight,
                            DType w_dtype, const float* rstd, void* dx, DType dx_dtype, float* d_weight, size_t n,
                            size_t hidden, bool accumulate_dx);
  void (*rope)(void* x, DType dtype, const float* cos, const float* sin, size_t n, int seq_len, int heads, int head_dim,
               bool inverse, size_t row_stride);
  void (*attention)(const void* q, const void* k, const void* v, void* out, float* lse, DType dtype,
                    const ref::AttentionDims& dims);
  void (*attention_backward)(const void* q, const void* k, const void* v, const void* out, const void* d_out,
                             const float* lse, void* dq, void* dk, void* dv, float* d_rows, DType dtype,
                             const ref::AttentionDims& dims);
  void (*swiglu)(const void* gate_up, DType gate_up_dtype, void* out, DType out_dtype, size_t rows, size_t inter);
  void (*swiglu_backward)(const void* gate_up, DType gate_up_dtype, const void* d_out, DType d_out_dtype,
                          void* d_gate_up, DType d_gate_up_dtype, size_t rows, size_t inter);
  void (*add)(const void* a, DType a_dtype, const void* b, DType b_dtype, void* out, DType out_dtype, size_t n);
  void (*add_bias)(void* x, DType x_dtype, const void* bias, DType bias_dtype, size_t n, size_t channels);
  void (*bias_backward)(const void* d_out, DType d_out_dtype, float* d_bias, size_t rows, size_t channels,
                        size_t row_stride);
  void (*cross_entropy)(void* logits, DType dtype, const int32_t* labels, float* losses, size_t rows, size_t vocab,
                        float grad_scale);
  void (*argmax_rows)(const void* x, DType dtype, int32_t* out, size_t rows, size_t cols);
  double (*sum)(const void* x, DType dtype, size_t n);
  void (*adamw)(float* master, void* weight, DType weight_dtype, const void* grad, DType grad_dtype, float* m, float* v,
                size_t n, const ref::AdamWArgs& args);
  double (*sum_squares)(const void* x, DType dtype, size_t n);
  void (*scale)(void* x, DType dtype, size_t n, float factor);
  void (*accumulate)(void* dst, DType dst_dtype, const void* src, DType src_dtype, size_t n, float factor);
  void (*cast)(const void* src, DType src_dtype, void* dst, DType dst_dtype, size_t n);
  void (*fill)(void* dst, DType dtype, size_t n, float value);
};

/** Portable C++: runs on any CPU. */
const KernelTable& generic_kernels();

/** AVX-512 F/BW/DQ/VL (call only where the CPU has them: isa.h). */
const KernelTable& avx512_kernels();

}  // namespace badam::engine
