// CPU references of every kernel: plain loops over host memory, always compiled. They define what the
// CUDA kernels compute, and CI tests them against @badam/core's and @badam/ratio's JavaScript formulas.
#pragma once

#include <cstddef>
#include <cstdint>

#include "dtype.h"
#include "optimizer_math.h"

namespace badam::ref {

/** Scalars of one fused AdamW step (torch.optim.AdamW; decay 0 skips weight decay). */
struct AdamWArgs {
  float lr, beta1, beta2, eps, weight_decay;
  int step;             // 1-based, since the block's activation
  float grad_scale;     // 1 / accumulation steps, times the clipping factor
};

/** The per-step scalars of AdamW, computed once on the host in fp32 (shared by the reference and the GPU). */
optim::AdamWStep adamw_step(const AdamWArgs& args);

/** Scalars of the masked sparse-Adam update of BlockOptimizerRatio (no weight decay). */
struct SparseAdamArgs {
  float lr, beta1, beta2, eps;
  int step;
};

/** Leading dimensions of a GEMM's row-major operands: elements between rows of A, B, C as stored. */
struct GemmLayout {
  int lda, ldb, ldc;
};

/** The packed leading dimensions of op(A) [m, k], op(B) [k, n], C [m, n]. */
inline GemmLayout packed_layout(int m, int n, int k, bool trans_a, bool trans_b) {
  return GemmLayout{trans_a ? m : k, trans_b ? k : n, n};
}

/**
 * C[m,n] = alpha * op(A)[m,k] op(B)[k,n] + beta * C, row-major with leading dimensions `ld`, A and B of `ab`
 * dtype, C of `c` dtype, accumulation in fp32 (as cuBLAS with CUBLAS_COMPUTE_32F), C rounded to its dtype once
 * at the end.
 */
void gemm(const void* a, const void* b, void* c, DType ab, DType cdt, int m, int n, int k, bool trans_a, bool trans_b,
          float alpha, float beta, const GemmLayout& ld);

/**
 * One AdamW step over n elements, fused: g = grad * grad_scale (grad fp32 or bf16), m and v updated, the
 * fp32 master updated, and the weight (bf16, fp16 or fp32) written from the master, rounded, in the same
 * pass. `master` may be null for fp32 weights, which are then their own master.
 */
void adamw(float* master, void* weight, DType weight_dtype, const void* grad, DType grad_dtype, float* m, float* v,
           size_t n, const AdamWArgs& args);

/** Sum of squares of n elements (fp32 or bf16), accumulated in double. */
double sum_squares(const void* x, DType dtype, size_t n);

/** x *= factor, in place (fp32 or bf16, rounded). */
void scale(void* x, DType dtype, size_t n, float factor);

/** dst += src * factor in fp32, dst rounded to its dtype (fp32, bf16 or fp16): gradient accumulation. */
void accumulate(void* dst, DType dst_dtype, const void* src, DType src_dtype, size_t n, float factor);

/** Converts n elements from one dtype to another (round to nearest even). */
void cast(const void* src, DType src_dtype, void* dst, DType dst_dtype, size_t n);

/** Step size of the sparse update: lr * sqrt(1 - b2^t) / (1 - b1^t), in fp32 on the host. */
float sparse_adam_step_size(const SparseAdamArgs& args);

/**
 * The masked Adam update: for the k entries `indices` of `param` (fp32 master), compact moments m[k] and
 * v[k]; step size lr * sqrt(1 - b2^t) / (1 - b1^t). When `weight` is given it receives the rounded new
 * values at the same indices.
 */
void sparse_adam(float* param, void* weight, DType weight_dtype, const void* grad, DType grad_dtype,
                 const int32_t* indices, float* m, float* v, size_t k, const SparseAdamArgs& args);

}  // namespace badam::ref
