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
#include "element_access.h"  // BADAM_HD

namespace badam::ref {

/**
 * Shapes of one attention call: causal (by default) grouped-query attention with optional padding. q, dq are
 * rows of `q_stride` elements per token (heads * head_dim when 0), k, v, dk, dv rows of `kv_stride`
 * (kv_heads * head_dim when 0): q, k and v may be column blocks of one fused [N, Q + 2 KV] projection.
 * out and dOut are packed [N, heads * head_dim].
 */
struct AttentionDims {
  int batch, seq_len, heads, kv_heads, head_dim;
  float scale;              // usually 1 / sqrt(head_dim)
  bool causal;
  const int32_t* lengths;   // [batch] real tokens per row (device memory), or null: all seq_len
  int q_stride = 0;
  int kv_stride = 0;
};

/** Elements per token row of q and dq. */
BADAM_HD inline size_t q_stride_of(const AttentionDims& d) {
  return d.q_stride > 0 ? static_cast<size_t>(d.q_stride) : static_cast<size_t>(d.heads) * d.head_dim;
}

/** Elements per token row of k, v, dk and dv. */
BADAM_HD inline size_t kv_stride_of(const AttentionDims& d) {
  return d.kv_stride > 0 ? static_cast<size_t>(d.kv_stride) : static_cast<size_t>(d.kv_heads) * d.head_dim;
}

/** Index of element i of head h of token (b, s) in rows of `stride` elements. */
BADAM_HD inline size_t head_index(const AttentionDims& d, size_t stride, int b, int s, int h, int i) {
  return (static_cast<size_t>(b) * d.seq_len + s) * stride + static_cast<size_t>(h) * d.head_dim + i;
}

/** Rows per chunk, and the most chunks, of the GPU's deterministic column sums (RMSNorm's dWeight, dBias). */
constexpr size_t kColumnRowsPerChunk = 64;
constexpr size_t kMaxColumnChunks = 64;

/** Chunks of rows the GPU's column sums split `rows` into (each chunk's sums go to a workspace row). */
inline size_t column_sum_chunks(size_t rows) {
  const size_t chunks = (rows + kColumnRowsPerChunk - 1) / kColumnRowsPerChunk;
  return chunks < 1 ? 1 : (chunks > kMaxColumnChunks ? kMaxColumnChunks : chunks);
}

/** fp32 elements of workspace that column sums over rows x cols need (RMSNorm's dWeight, dBias). */
inline size_t column_sum_workspace(size_t rows, size_t cols) { return column_sum_chunks(rows) * cols; }

/** The number of CTAs the dk / dv pass of the tensor-core attention backward aims for (two a 132-SM GPU). */
constexpr long kDkvTargetCtas = 256;

/**
 * How many parts the tensor-core backward splits each GQA group's query heads into for dk / dv: the smallest
 * divisor s of the group with ceil(seq_len / 64) * kv_heads * batch * s >= kDkvTargetCtas, else the group.
 * A function of the shapes alone, so both devices account the same workspace.
 */
inline int attention_dkv_splits(const AttentionDims& d) {
  const int group = d.heads / d.kv_heads;
  const long base = static_cast<long>((d.seq_len + 63) / 64) * d.kv_heads * d.batch;
  for (int s = 1; s < group; s++) {
    if (group % s == 0 && base * s >= kDkvTargetCtas) return s;
  }
  return group < 1 ? 1 : group;
}

/**
 * fp32 elements of the workspace attention_backward needs beyond D: the split dk / dv partial sums, when the
 * call may take the tensor-core kernels (16-bit, head dim 64 or 128) and the group is split; else 0. The
 * CPU device is given the same workspace (and leaves it alone), so its accounting is the GPU's.
 */
inline size_t attention_backward_partial_floats(const AttentionDims& d, DType dtype) {
  const bool tensor_cores = (dtype == DType::BF16 || dtype == DType::F16) && (d.head_dim == 64 || d.head_dim == 128);
  const int splits = attention_dkv_splits(d);
  if (!tensor_cores || splits <= 1) return 0;
  return 2 * static_cast<size_t>(splits) * d.batch * d.seq_len * d.kv_heads * d.head_dim;
}

/** out[n] = table[ids[n]] ([vocab, hidden] -> [n, hidden]); an id outside [0, vocab) gives a zero row. */
void embedding(const void* table, DType table_dtype, const int32_t* ids, void* out, DType out_dtype, size_t n,
               size_t vocab, size_t hidden);

/** d_table[ids[n]] += d_out[n] (fp32 accumulator); ids outside [0, vocab) are skipped. */
void embedding_backward(const void* d_out, DType d_out_dtype, const int32_t* ids, float* d_table, size_t n,
                        size_t vocab, size_t hidden);

/** HF LlamaRMSNorm over rows of `hidden`: rstd[n] = 1/sqrt(mean(x^2) + eps), out = w * round_to_x(x * rstd). */
void rms_norm(const void* x, DType x_dtype, const void* weight, DType w_dtype, void* out, DType out_dtype, float* rstd,
              size_t n, size_t hidden, float eps);

/**
 * The residual add fused with the next RMSNorm: sum = x + delta (rounded to `dtype`, which x, delta, sum and
 * out share; sum may alias x), then out = rms_norm(sum) as rms_norm computes it, with rstd.
 */
void add_rms_norm(const void* x, const void* delta, void* sum, DType dtype, const void* weight, DType w_dtype, void* out,
                  float* rstd, size_t n, size_t hidden, float eps);

/** dx = (or += when accumulate_dx) the gradient w.r.t. x; d_weight (fp32, may be null) += sum_n dOut x rstd. */
void rms_norm_backward(const void* d_out, DType d_out_dtype, const void* x, DType x_dtype, const void* weight,
                       DType w_dtype, const float* rstd, void* dx, DType dx_dtype, float* d_weight, size_t n,
                       size_t hidden, bool accumulate_dx);

/**
 * HF rotate_half rope in place on the first `heads` heads of each of the n token rows of x (rows of
 * `row_stride` elements: q and k of a fused [N, Q + 2 KV] projection in one pass), position s = token mod
 * seq_len; cos / sin [*, d/2].
 */
void rope(void* x, DType dtype, const float* cos, const float* sin, size_t n, int seq_len, int heads, int head_dim,
          bool inverse, size_t row_stride);

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

/**
 * out [rows, inter] = silu(gate) * up, gate and up the two halves of each row of the fused gate_up
 * [rows, 2 * inter] projection (gate first).
 */
void swiglu(const void* gate_up, DType gate_up_dtype, void* out, DType out_dtype, size_t rows, size_t inter);

/**
 * d_gate_up [rows, 2 * inter] = the gradients of silu(gate) * up w.r.t. gate and up, in gate_up's layout
 * (overwritten; it may be gate_up itself: each element is read before it is written).
 */
void swiglu_backward(const void* gate_up, DType gate_up_dtype, const void* d_out, DType d_out_dtype, void* d_gate_up,
                     DType d_gate_up_dtype, size_t rows, size_t inter);

/** out = a + b over n elements (out may alias a or b). */
void add(const void* a, DType a_dtype, const void* b, DType b_dtype, void* out, DType out_dtype, size_t n);

/** x[r, c] += bias[c] for x [n / channels, channels]. */
void add_bias(void* x, DType x_dtype, const void* bias, DType bias_dtype, size_t n, size_t channels);

/** d_bias[c] (fp32) += sum over the rows r of d_out[r * row_stride + c], c < channels. */
void bias_backward(const void* d_out, DType d_out_dtype, float* d_bias, size_t rows, size_t channels, size_t row_stride);

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
