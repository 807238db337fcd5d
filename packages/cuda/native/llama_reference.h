// CPU references of the Llama kernels: plain loops over host memory, always compiled, run by
// the CPU device. The per-element formulas come from llama_math.h, shared with the CUDA kernels; the
// attention reference is the obvious one (explicit scores of one query row, then a softmax), not the GPU's
// flash-style tiling, so the CUDA kernel is checked against something that does not share its structure.
//
// Layouts are row-major with tokens as rows: N = batch * seq_len, token n = b * seq_len + s; q / out are
// [N, heads * head_dim], k / v [N, kv_heads * head_dim]. Every `DType` is a float dtype (checked by the addon).
#pragma once

#include <cstddef>
#include <cstdint>

#include "dtype.h"

namespace badam::ref {

/** Shapes of one attention call: causal (by default) grouped-query attention with optional padding. */
struct AttentionDims {
  int batch, seq_len, heads, kv_heads, head_dim;
  float scale;              // usually 1 / sqrt(head_dim)
  bool causal;
  const int32_t* lengths;   // [batch] real tokens per row (device memory), or null: all seq_len
};

/** out[n] = table[ids[n]] ([vocab, hidden] -> [n, hidden]); an id outside [0, vocab) gives a zero row. */
void embedding(const void* table, DType table_dtype, const int32_t* ids, void* out, DType out_dtype, size_t n,
               size_t vocab, size_t hidden);

/** d_table[ids[n]] += d_out[n] (fp32 accumulator); ids outside [0, vocab) are skipped. */
void embedding_backward(const void* d_out, DType d_out_dtype, const int32_t* ids, float* d_table, size_t n,
                        size_t vocab, size_t hidden);

/** HF LlamaRMSNorm over rows of `hidden`: rstd[n] = 1/sqrt(mean(x^2) + eps), out = w * round_to_x(x * rstd). */
void rms_norm(const void* x, DType x_dtype, const void* weight, DType w_dtype, void* out, DType out_dtype, float* rstd,
              size_t n, size_t hidden, float eps);

/** dx = (or += when accumulate_dx) the gradient w.r.t. x; d_weight (fp32, may be null) += sum_n dOut x rstd. */
void rms_norm_backward(const void* d_out, DType d_out_dtype, const void* x, DType x_dtype, const void* weight,
                       DType w_dtype, const float* rstd, void* dx, DType dx_dtype, float* d_weight, size_t n,
                       size_t hidden, bool accumulate_dx);

/** HF rotate_half rope in place on x [n, heads * head_dim], position s = token mod seq_len; cos/sin [*, d/2]. */
void rope(void* x, DType dtype, const float* cos, const float* sin, size_t n, int seq_len, int heads, int head_dim,
          bool inverse);

/** out (fp32 lse [batch, heads, seq_len]) and the attention output; see AttentionDims. */
void attention(const void* q, const void* k, const void* v, void* out, float* lse, DType dtype, const AttentionDims& dims);

/**
 * The textbook attention backward: P recomputed from q, k and lse, D = rowsum(dOut * out) into `d_rows`
 * (fp32 [batch, heads, seq_len] workspace), dP = dOut v^T, dS = P (dP - D) scale, dq = dS k, dk = dS^T q and
 * dv = P^T dOut summed over the query heads of each kv head. dq, dk, dv are overwritten.
 */
void attention_backward(const void* q, const void* k, const void* v, const void* out, const void* d_out,
                        const float* lse, void* dq, void* dk, void* dv, float* d_rows, DType dtype,
                        const AttentionDims& dims);

/** out = silu(gate) * up over n elements. */
void swiglu(const void* gate, DType gate_dtype, const void* up, DType up_dtype, void* out, DType out_dtype, size_t n);

/** d_gate, d_up = the gradients of silu(gate) * up (overwritten). */
void swiglu_backward(const void* gate, DType gate_dtype, const void* up, DType up_dtype, const void* d_out,
                     DType d_out_dtype, void* d_gate, DType d_gate_dtype, void* d_up, DType d_up_dtype, size_t n);

/** out = a + b over n elements (out may alias a or b). */
void add(const void* a, DType a_dtype, const void* b, DType b_dtype, void* out, DType out_dtype, size_t n);

/** x[r, c] += bias[c] for x [n / channels, channels]. */
void add_bias(void* x, DType x_dtype, const void* bias, DType bias_dtype, size_t n, size_t channels);

/** d_bias[c] (fp32) += sum over rows of d_out[r, c]. */
void bias_backward(const void* d_out, DType d_out_dtype, float* d_bias, size_t n, size_t channels);

/**
 * Per row of logits [rows, vocab]: label < 0 -> loss 0 (and, with grad_scale != 0, the row zeroed); label >=
 * vocab -> loss NaN and the row zeroed (the caller checks labels; this only keeps memory safe); otherwise
 * loss = logsumexp(row) - row[label] and, with grad_scale != 0, the row overwritten by
 * (softmax(row) - onehot(label)) * grad_scale. grad_scale = 0 leaves the logits untouched.
 */
void cross_entropy(void* logits, DType dtype, const int32_t* labels, float* losses, size_t rows, size_t vocab,
                   float grad_scale);

/** out[r] = index of the maximum of row r of x [rows, cols] (the first on ties; NaNs are skipped). */
void argmax_rows(const void* x, DType dtype, int32_t* out, size_t rows, size_t cols);

/** Sum of n elements, accumulated in double. */
double sum(const void* x, DType dtype, size_t n);

}  // namespace badam::ref
