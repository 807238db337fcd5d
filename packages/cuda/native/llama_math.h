// Per-element math of the Llama kernels, shared by the CPU reference (llama_reference.cc, g++) and the CUDA
// kernels (the *_kernels.cu and attention_*.cu files, nvcc): every formula is written once here, so the
// GPU's only untested code is its launch and indexing. Compute is always fp32; activations are loaded from
// and stored to their dtype (float32, bfloat16 or float16) through element_access.h's load_f32 / store_f32,
// which round to nearest even on both sides.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "element_access.h"  // load_f32, store_f32, round_to_dtype and BADAM_HD

namespace badam::llama {

// --- RMSNorm (HF LlamaRMSNorm) ---------------------------------------------------------------------------

/** r = 1 / sqrt(mean(x^2) + eps) from the row's sum of squares over `h` elements. */
BADAM_HD inline float rms_rstd(float sum_squares, int h, float eps) {
  return 1.0f / sqrtf(sum_squares / static_cast<float>(h) + eps);
}

/** out = weight * round_to_act(x * r): the normalised value is rounded to x's dtype first, as HF does. */
BADAM_HD inline float rms_norm_value(float x, float rstd, float weight, int x_dtype) {
  return weight * round_to_dtype(x_dtype, x * rstd);
}

/**
 * dx_i = r * (g_i - x_i * r^2 * mean_j(g_j x_j)) with g = dOut * weight; `mean_gx` is (1/H) sum_j g_j x_j.
 * (The rounding of x * r to the activation dtype is taken as the identity, as autograd through bf16 does.)
 */
BADAM_HD inline float rms_norm_dx(float d_out, float weight, float x, float rstd, float mean_gx) {
  return rstd * (d_out * weight - x * rstd * rstd * mean_gx);
}

// --- rotary position embedding (HF rotate_half) -----------------------------------------------------------

/** Rotates the pair (x1, x2) = (x[i], x[i + d/2]) by the angle whose cosine and sine are c, s. */
BADAM_HD inline void rope_rotate(float& x1, float& x2, float c, float s, bool inverse) {
  if (inverse) s = -s;
  const float y1 = x1 * c - x2 * s;
  const float y2 = x2 * c + x1 * s;
  x1 = y1;
  x2 = y2;
}

// --- SwiGLU -----------------------------------------------------------------------------------------------

BADAM_HD inline float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

/** silu(gate) * up, silu(x) = x / (1 + exp(-x)). */
BADAM_HD inline float swiglu_value(float gate, float up) { return gate * sigmoid(gate) * up; }

/** d silu(gate) * up / d gate, times dOut. */
BADAM_HD inline float swiglu_d_gate(float gate, float up, float d_out) {
  const float s = sigmoid(gate);
  return d_out * up * s * (1.0f + gate * (1.0f - s));
}

/** d silu(gate) * up / d up, times dOut. */
BADAM_HD inline float swiglu_d_up(float gate, float d_out) { return d_out * gate * sigmoid(gate); }

// --- attention --------------------------------------------------------------------------------------------

/** Key j is visible to query s of a sequence of `length` real tokens: causal (j <= s) and not padding. */
BADAM_HD inline bool key_visible(int j, int s, int length, bool causal) { return j < length && (!causal || j <= s); }

/** A row's length from the optional per-row lengths, clamped to [0, seq_len] so no kernel reads outside. */
BADAM_HD inline int row_length(const int32_t* lengths, int b, int seq_len) {
  if (lengths == nullptr) return seq_len;
  const int len = lengths[b];
  return len < 0 ? 0 : (len > seq_len ? seq_len : len);
}

/** exp(m_old - m_new), the factor that rescales a running softmax sum; 0 when nothing was seen yet. */
BADAM_HD inline float softmax_rescale(float m_old, float m_new) {
  return m_old == -INFINITY ? 0.0f : expf(m_old - m_new);
}

/** The log-sum-exp of a softmax with running max `m` and sum `l` (of exp(x - m)); 0 for an empty row. */
BADAM_HD inline float softmax_lse(float m, float l) { return l > 0.0f ? m + logf(l) : 0.0f; }

/** The attention output of a row: the accumulated sum of p v divided by the softmax sum; 0 for no key. */
BADAM_HD inline float attention_output(float acc, float l) { return l > 0.0f ? acc / l : 0.0f; }

/** P recomputed from a scaled score and the row's lse (backward). */
BADAM_HD inline float attention_prob(float score, float lse) { return expf(score - lse); }

/** dS = P (dP - D) * scale, the gradient of the unscaled q.k product; D = rowsum(dOut * out). */
BADAM_HD inline float attention_d_score(float p, float dp, float d_row, float scale) { return p * (dp - d_row) * scale; }

// --- cross-entropy ----------------------------------------------------------------------------------------

/** Merges two partial softmaxes (max m, sum l of exp(x - m)) into the first: online max/sum. */
BADAM_HD inline void softmax_merge(float& m, float& l, float m2, float l2) {
  if (m2 == -INFINITY) return;
  if (m == -INFINITY) {
    m = m2;
    l = l2;
    return;
  }
  const float mx = m > m2 ? m : m2;
  l = l * expf(m - mx) + l2 * expf(m2 - mx);
  m = mx;
}

/** Adds one value to a running softmax (max m, sum l of exp(x - m)); -infinity adds nothing. */
BADAM_HD inline void softmax_add(float& m, float& l, float x) {
  if (x == -INFINITY) return;
  if (x > m) {
    l = l * softmax_rescale(m, x) + 1.0f;
    m = x;
  } else {
    l += expf(x - m);
  }
}

/** dLogit = (softmax - onehot) * grad_scale. */
BADAM_HD inline float cross_entropy_grad(float logit, float lse, bool is_label, float grad_scale) {
  return (expf(logit - lse) - (is_label ? 1.0f : 0.0f)) * grad_scale;
}

// --- argmax -----------------------------------------------------------------------------------------------

/**
 * Whether candidate (v, i) beats the best so far (best_v, best_i) in a row's argmax: a larger value, or an
 * equal one at a smaller index (the first maximum wins); NaNs never win; best_i < 0 means none yet.
 */
BADAM_HD inline bool argmax_better(float v, int i, float best_v, int best_i) {
  if (i < 0 || v != v) return false;
  if (best_i < 0) return true;
  return v > best_v || (v == best_v && i < best_i);
}

}  // namespace badam::llama
