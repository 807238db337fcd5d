#include "llama_reference.h"

#include <cmath>
#include <limits>
#include <vector>

#include "llama_math.h"

namespace badam::ref {

namespace {
int dt(DType t) { return static_cast<int>(t); }
}  // namespace

// table [vocab, hidden], ids [n] -> out [n, hidden]
void embedding(const void* table, DType table_dtype, const int32_t* ids, void* out, DType out_dtype, size_t n,
               size_t vocab, size_t hidden) {
  for (size_t t = 0; t < n; t++) {
    const int32_t id = ids[t];
    const bool valid = id >= 0 && static_cast<size_t>(id) < vocab;
    for (size_t c = 0; c < hidden; c++) {
      const float value = valid ? load_f32(table, dt(table_dtype), static_cast<size_t>(id) * hidden + c) : 0.0f;
      store_f32(out, dt(out_dtype), t * hidden + c, value);
    }
  }
}

// d_out [n, hidden] -> d_table [vocab, hidden] (+=)
void embedding_backward(const void* d_out, DType d_out_dtype, const int32_t* ids, float* d_table, size_t n,
                        size_t vocab, size_t hidden) {
  for (size_t t = 0; t < n; t++) {
    const int32_t id = ids[t];
    if (id < 0 || static_cast<size_t>(id) >= vocab) continue;
    float* row = d_table + static_cast<size_t>(id) * hidden;
    for (size_t c = 0; c < hidden; c++) row[c] += load_f32(d_out, dt(d_out_dtype), t * hidden + c);
  }
}

// x, out [n, hidden], weight [hidden], rstd [n]
void rms_norm(const void* x, DType x_dtype, const void* weight, DType w_dtype, void* out, DType out_dtype, float* rstd,
              size_t n, size_t hidden, float eps) {
  for (size_t t = 0; t < n; t++) {
    float ss = 0.0f;
    for (size_t c = 0; c < hidden; c++) {
      const float xv = load_f32(x, dt(x_dtype), t * hidden + c);
      ss += xv * xv;
    }
    const float r = llama::rms_rstd(ss, static_cast<int>(hidden), eps);
    rstd[t] = r;
    for (size_t c = 0; c < hidden; c++) {
      const float y = llama::rms_norm_value(load_f32(x, dt(x_dtype), t * hidden + c), r, load_f32(weight, dt(w_dtype), c),
                                            dt(x_dtype));
      store_f32(out, dt(out_dtype), t * hidden + c, y);
    }
  }
}

// x, delta, sum, out [n, hidden] of one dtype, weight [hidden], rstd [n]; sum may alias x
void add_rms_norm(const void* x, const void* delta, void* sum, DType dtype, const void* weight, DType w_dtype, void* out,
                  float* rstd, size_t n, size_t hidden, float eps) {
  for (size_t i = 0; i < n * hidden; i++) {
    store_f32(sum, dt(dtype), i, load_f32(x, dt(dtype), i) + load_f32(delta, dt(dtype), i));
  }
  rms_norm(sum, dtype, weight, w_dtype, out, dtype, rstd, n, hidden, eps);
}

// d_out, x, dx [n, hidden], weight [hidden], rstd [n], d_weight [hidden] (+=, fp32) or null
void rms_norm_backward(const void* d_out, DType d_out_dtype, const void* x, DType x_dtype, const void* weight,
                       DType w_dtype, const float* rstd, void* dx, DType dx_dtype, float* d_weight, size_t n,
                       size_t hidden, bool accumulate_dx) {
  for (size_t t = 0; t < n; t++) {
    const float r = rstd[t];
    float gx = 0.0f;  // sum_c dOut * weight * x
    for (size_t c = 0; c < hidden; c++) {
      gx += load_f32(d_out, dt(d_out_dtype), t * hidden + c) * load_f32(weight, dt(w_dtype), c) *
            load_f32(x, dt(x_dtype), t * hidden + c);
    }
    const float mean_gx = gx / static_cast<float>(hidden);
    for (size_t c = 0; c < hidden; c++) {
      const size_t i = t * hidden + c;
      const float g = load_f32(d_out, dt(d_out_dtype), i);
      const float xv = load_f32(x, dt(x_dtype), i);
      float d = llama::rms_norm_dx(g, load_f32(weight, dt(w_dtype), c), xv, r, mean_gx);
      if (accumulate_dx) d += load_f32(dx, dt(dx_dtype), i);
      store_f32(dx, dt(dx_dtype), i, d);
      if (d_weight != nullptr) d_weight[c] += g * xv * r;
    }
  }
}

// the first `heads` heads of x [n, row_stride] in place, cos / sin [max_pos, head_dim / 2]
void rope(void* x, DType dtype, const float* cos, const float* sin, size_t n, int seq_len, int heads, int head_dim,
          bool inverse, size_t row_stride) {
  const int half = head_dim / 2;
  for (size_t t = 0; t < n; t++) {
    const size_t pos = t % static_cast<size_t>(seq_len);
    for (int h = 0; h < heads; h++) {
      const size_t base = t * row_stride + static_cast<size_t>(h) * head_dim;
      for (int i = 0; i < half; i++) {
        float x1 = load_f32(x, dt(dtype), base + i);
        float x2 = load_f32(x, dt(dtype), base + i + half);
        llama::rope_rotate(x1, x2, cos[pos * half + i], sin[pos * half + i], inverse);
        store_f32(x, dt(dtype), base + i, x1);
        store_f32(x, dt(dtype), base + i + half, x2);
      }
    }
  }
}

namespace {

/** Offsets of head h of token (b, s) in rows of `stride` elements. */
size_t at(const AttentionDims& d, int b, int s, size_t stride, int h) { return head_index(d, stride, b, s, h, 0); }

/** The scaled scores of query (b, h, s) against every key (masked ones -infinity). */
void scores_of_row(const void* q, const void* k, int dtype, const AttentionDims& d, int b, int h, int s, int length,
                   std::vector<float>& scores) {
  const int kvh = h / (d.heads / d.kv_heads);
  const size_t qo = at(d, b, s, q_stride_of(d), h);
  for (int j = 0; j < d.seq_len; j++) {
    if (!llama::key_visible(j, s, length, d.causal)) {
      scores[j] = -INFINITY;
      continue;
    }
    const size_t ko = at(d, b, j, kv_stride_of(d), kvh);
    float dot = 0.0f;
    for (int i = 0; i < d.head_dim; i++) dot += load_f32(q, dtype, qo + i) * load_f32(k, dtype, ko + i);
    scores[j] = dot * d.scale;
  }
}

}  // namespace

// q, out [N, heads * d]; k, v [N, kv_heads * d]; lse [batch, heads, seq_len]
void attention(const void* q, const void* k, const void* v, void* out, float* lse, DType dtype,
               const AttentionDims& d) {
  const int t = dt(dtype);
  std::vector<float> scores(d.seq_len), acc(d.head_dim);
  for (int b = 0; b < d.batch; b++) {
    const int length = llama::row_length(d.lengths, b, d.seq_len);
    for (int h = 0; h < d.heads; h++) {
      const int kvh = h / (d.heads / d.kv_heads);
      for (int s = 0; s < d.seq_len; s++) {
        scores_of_row(q, k, t, d, b, h, s, length, scores);
        // softmax: max, then the sum of exponentials, then the weighted sum of values.
        float m = -INFINITY;
        for (int j = 0; j < d.seq_len; j++) m = scores[j] > m ? scores[j] : m;
        float l = 0.0f;
        for (float& x : acc) x = 0.0f;
        if (m != -INFINITY) {
          for (int j = 0; j < d.seq_len; j++) {
            if (scores[j] == -INFINITY) continue;
            const float p = std::exp(scores[j] - m);
            l += p;
            const size_t vo = at(d, b, j, kv_stride_of(d), kvh);
            for (int i = 0; i < d.head_dim; i++) acc[i] += p * load_f32(v, t, vo + i);
          }
        }
        const size_t oo = at(d, b, s, static_cast<size_t>(d.heads) * d.head_dim, h);
        for (int i = 0; i < d.head_dim; i++) store_f32(out, t, oo + i, llama::attention_output(acc[i], l));
        lse[(static_cast<size_t>(b) * d.heads + h) * d.seq_len + s] = llama::softmax_lse(m, l);
      }
    }
  }
}

void attention_backward(const void* q, const void* k, const void* v, const void* out, const void* d_out,
                        const float* lse, void* dq, void* dk, void* dv, float* d_rows, DType dtype,
                        const AttentionDims& d) {
  const int t = dt(dtype);
  const size_t kv_packed = static_cast<size_t>(d.kv_heads) * d.head_dim, kv_stride = kv_stride_of(d);
  const size_t out_stride = static_cast<size_t>(d.heads) * d.head_dim;
  const size_t kv_numel = static_cast<size_t>(d.batch) * d.seq_len * kv_packed;
  std::vector<float> dk_acc(kv_numel, 0.0f), dv_acc(kv_numel, 0.0f);  // packed, summed over the heads of a group
  std::vector<float> scores(d.seq_len), dq_row(d.head_dim);
  for (int b = 0; b < d.batch; b++) {
    const int length = llama::row_length(d.lengths, b, d.seq_len);
    for (int h = 0; h < d.heads; h++) {
      const int kvh = h / (d.heads / d.kv_heads);
      for (int s = 0; s < d.seq_len; s++) {
        const size_t row = (static_cast<size_t>(b) * d.heads + h) * d.seq_len + s;
        const size_t qo = at(d, b, s, q_stride_of(d), h), oo = at(d, b, s, out_stride, h);
        float d_row = 0.0f;
        for (int i = 0; i < d.head_dim; i++) d_row += load_f32(d_out, t, oo + i) * load_f32(out, t, oo + i);
        d_rows[row] = d_row;
        scores_of_row(q, k, t, d, b, h, s, length, scores);
        for (float& x : dq_row) x = 0.0f;
        for (int j = 0; j < d.seq_len; j++) {
          if (scores[j] == -INFINITY) continue;
          const float p = llama::attention_prob(scores[j], lse[row]);
          const size_t ko = at(d, b, j, kv_stride, kvh), ka = at(d, b, j, kv_packed, kvh);
          float dp = 0.0f;
          for (int i = 0; i < d.head_dim; i++) dp += load_f32(d_out, t, oo + i) * load_f32(v, t, ko + i);
          const float ds = llama::attention_d_score(p, dp, d_row, d.scale);
          for (int i = 0; i < d.head_dim; i++) {
            dq_row[i] += ds * load_f32(k, t, ko + i);
            dk_acc[ka + i] += ds * load_f32(q, t, qo + i);
            dv_acc[ka + i] += p * load_f32(d_out, t, oo + i);
          }
        }
        for (int i = 0; i < d.head_dim; i++) store_f32(dq, t, qo + i, dq_row[i]);
      }
    }
  }
  for (size_t i = 0; i < kv_numel; i++) {
    const size_t at_row = (i / kv_packed) * kv_stride + i % kv_packed;
    store_f32(dk, t, at_row, dk_acc[i]);
    store_f32(dv, t, at_row, dv_acc[i]);
  }
}

void swiglu(const void* gate_up, DType gate_up_dtype, void* out, DType out_dtype, size_t rows, size_t inter) {
  for (size_t r = 0; r < rows; r++) {
    for (size_t c = 0; c < inter; c++) {
      const float g = load_f32(gate_up, dt(gate_up_dtype), r * 2 * inter + c);
      const float u = load_f32(gate_up, dt(gate_up_dtype), r * 2 * inter + inter + c);
      store_f32(out, dt(out_dtype), r * inter + c, llama::swiglu_value(g, u));
    }
  }
}

void swiglu_backward(const void* gate_up, DType gate_up_dtype, const void* d_out, DType d_out_dtype, void* d_gate_up,
                     DType d_gate_up_dtype, size_t rows, size_t inter) {
  for (size_t r = 0; r < rows; r++) {
    for (size_t c = 0; c < inter; c++) {
      const size_t gi = r * 2 * inter + c, ui = gi + inter;
      const float g = load_f32(gate_up, dt(gate_up_dtype), gi), u = load_f32(gate_up, dt(gate_up_dtype), ui);
      const float d = load_f32(d_out, dt(d_out_dtype), r * inter + c);
      store_f32(d_gate_up, dt(d_gate_up_dtype), gi, llama::swiglu_d_gate(g, u, d));
      store_f32(d_gate_up, dt(d_gate_up_dtype), ui, llama::swiglu_d_up(g, d));
    }
  }
}

void add(const void* a, DType a_dtype, const void* b, DType b_dtype, void* out, DType out_dtype, size_t n) {
  for (size_t i = 0; i < n; i++) {
    store_f32(out, dt(out_dtype), i, load_f32(a, dt(a_dtype), i) + load_f32(b, dt(b_dtype), i));
  }
}

void add_bias(void* x, DType x_dtype, const void* bias, DType bias_dtype, size_t n, size_t channels) {
  for (size_t i = 0; i < n; i++) {
    store_f32(x, dt(x_dtype), i, load_f32(x, dt(x_dtype), i) + load_f32(bias, dt(bias_dtype), i % channels));
  }
}

void bias_backward(const void* d_out, DType d_out_dtype, float* d_bias, size_t rows, size_t channels, size_t row_stride) {
  for (size_t r = 0; r < rows; r++) {
    for (size_t c = 0; c < channels; c++) d_bias[c] += load_f32(d_out, dt(d_out_dtype), r * row_stride + c);
  }
}

// logits [rows, vocab] (in place when grad_scale != 0), labels [rows], losses [rows]
void cross_entropy(void* logits, DType dtype, const int32_t* labels, float* losses, size_t rows, size_t vocab,
                   float grad_scale) {
  const int t = dt(dtype);
  for (size_t r = 0; r < rows; r++) {
    const size_t base = r * vocab;
    const int32_t label = labels[r];
    if (label < 0 || static_cast<size_t>(label) >= vocab) {
      losses[r] = label < 0 ? 0.0f : std::numeric_limits<float>::quiet_NaN();
      if (grad_scale != 0.0f) {
        for (size_t c = 0; c < vocab; c++) store_f32(logits, t, base + c, 0.0f);
      }
      continue;
    }
    // Online max / sum in chunks merged pairwise, the GPU's pattern (threads, then a merge), in plain loops.
    constexpr size_t kChunk = 1024;
    float m = -INFINITY, l = 0.0f;
    for (size_t c0 = 0; c0 < vocab; c0 += kChunk) {
      float mc = -INFINITY, lc = 0.0f;
      for (size_t c = c0; c < vocab && c < c0 + kChunk; c++) llama::softmax_add(mc, lc, load_f32(logits, t, base + c));
      llama::softmax_merge(m, l, mc, lc);
    }
    const float lse = llama::softmax_lse(m, l);
    losses[r] = lse - load_f32(logits, t, base + static_cast<size_t>(label));
    if (grad_scale == 0.0f) continue;
    for (size_t c = 0; c < vocab; c++) {
      const float g = llama::cross_entropy_grad(load_f32(logits, t, base + c), lse, c == static_cast<size_t>(label), grad_scale);
      store_f32(logits, t, base + c, g);
    }
  }
}

void argmax_rows(const void* x, DType dtype, int32_t* out, size_t rows, size_t cols) {
  for (size_t r = 0; r < rows; r++) {
    float best_v = -INFINITY;
    int best_i = -1;
    for (size_t c = 0; c < cols; c++) {
      const float v = load_f32(x, dt(dtype), r * cols + c);
      if (llama::argmax_better(v, static_cast<int>(c), best_v, best_i)) {
        best_v = v;
        best_i = static_cast<int>(c);
      }
    }
    out[r] = best_i < 0 ? 0 : best_i;  // a row of NaNs: 0
  }
}

double sum(const void* x, DType dtype, size_t n) {
  double s = 0.0;
  for (size_t i = 0; i < n; i++) s += load_f32(x, dt(dtype), i);
  return s;
}

}  // namespace badam::ref
