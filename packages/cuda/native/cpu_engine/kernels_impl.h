// The CPU engine's kernels, written once and compiled once per instruction set: included inside
// badam::engine::<isa> by kernels_generic.cc and kernels_avx512.cc after they define the row primitives
// (load_row, store_row, round_row, max_of, exp_sum, exp_scale, dot, sum_f64, sum_squares_f64, tile_gemm,
// swiglu_row, swiglu_backward_row, adamw_row). Everything here is plain C++ on fp32 rows and tiles; the
// per-element formulas are llama_math.h's and optimizer_math.h's, as in the references.
//
// Threads: every kernel splits rows (or fixed chunks of elements) over the engine's pool. Reductions
// (sums, column sums of the norm and bias gradients) add partial results of fixed chunks in a fixed order,
// so results never depend on the number of threads.
//
// No #include here: the including file includes what this uses before opening its namespace.

namespace detail {

/** Thread-local fp32 scratch `slot` of at least n floats (grow-only: no allocation per call). */
inline float* scratch(int slot, size_t n) {
  thread_local std::vector<float> buffers[8];
  std::vector<float>& b = buffers[slot];
  if (b.size() < n) b.resize(n);
  return b.data();
}

/** Elements per chunk of elementwise kernels and of ordered reductions (a fixed size: thread-count independent). */
constexpr size_t kChunk = 8192;

inline size_t chunks_of(size_t n) { return (n + kChunk - 1) / kChunk; }

/** Runs body(begin, end) over [0, n) in chunks of kChunk, in parallel. */
template <typename Body>
void for_chunks(size_t n, Body body) {
  parallel_for(static_cast<int64_t>(chunks_of(n)), [&](int64_t c) {
    const size_t begin = static_cast<size_t>(c) * kChunk;
    body(begin, std::min(n, begin + kChunk));
  });
}

/** Rows per task of row-wise kernels: enough work per task to pay for handing it out. */
inline int64_t rows_per_task(size_t row_length) {
  return std::max<int64_t>(1, static_cast<int64_t>(16384 / std::max<size_t>(row_length, 1)));
}

/** Runs body(row) for rows [0, n) in parallel, several rows per task. */
template <typename Body>
void for_rows(size_t n, size_t row_length, Body body) {
  const int64_t per = rows_per_task(row_length);
  const int64_t tasks = (static_cast<int64_t>(n) + per - 1) / per;
  parallel_for(tasks, [&](int64_t task) {
    const size_t begin = static_cast<size_t>(task * per);
    const size_t end = std::min(n, static_cast<size_t>((task + 1) * per));
    for (size_t r = begin; r < end; r++) body(r);
  });
}

/** Column sums of fixed blocks of `block_rows` rows into partials [blocks, cols], then added in block order. */
template <typename RowAdd>
void ordered_column_sums(size_t rows, size_t cols, size_t block_rows, float* out, RowAdd add_row) {
  const size_t blocks = (rows + block_rows - 1) / block_rows;
  std::vector<float> partial(blocks * cols, 0.0f);
  parallel_for(static_cast<int64_t>(blocks), [&](int64_t b) {
    float* acc = partial.data() + static_cast<size_t>(b) * cols;
    const size_t end = std::min(rows, (static_cast<size_t>(b) + 1) * block_rows);
    for (size_t r = static_cast<size_t>(b) * block_rows; r < end; r++) add_row(r, acc);
  });
  for (size_t b = 0; b < blocks; b++) {
    const float* acc = partial.data() + b * cols;
    for (size_t c = 0; c < cols; c++) out[c] += acc[c];
  }
}

}  // namespace detail

// --- embedding --------------------------------------------------------------------------------------------

void embedding(const void* table, DType table_dtype, const int32_t* ids, void* out, DType out_dtype, size_t n,
               size_t vocab, size_t hidden) {
  detail::for_rows(n, hidden, [&](size_t t) {
    const int32_t id = ids[t];
    const bool valid = id >= 0 && static_cast<size_t>(id) < vocab;
    if (valid && table_dtype == out_dtype) {
      const size_t bytes = hidden * dtype_size(out_dtype);
      std::memcpy(static_cast<char*>(out) + t * bytes, static_cast<const char*>(table) + static_cast<size_t>(id) * bytes,
                  bytes);
      return;
    }
    float* row = detail::scratch(0, hidden);
    if (valid) load_row(table, table_dtype, static_cast<size_t>(id) * hidden, row, hidden);
    else std::fill(row, row + hidden, 0.0f);
    store_row(row, out, out_dtype, t * hidden, hidden);
  });
}

// Each task owns a band of columns and walks every token in order: no two threads touch one element, and a
// repeated id sums in token order, as the reference does.
void embedding_backward(const void* d_out, DType d_out_dtype, const int32_t* ids, float* d_table, size_t n,
                        size_t vocab, size_t hidden) {
  constexpr size_t kBand = 128;
  const size_t bands = (hidden + kBand - 1) / kBand;
  parallel_for(static_cast<int64_t>(bands), [&](int64_t b) {
    const size_t c0 = static_cast<size_t>(b) * kBand, width = std::min(kBand, hidden - c0);
    float* row = detail::scratch(0, width);
    for (size_t t = 0; t < n; t++) {
      const int32_t id = ids[t];
      if (id < 0 || static_cast<size_t>(id) >= vocab) continue;
      load_row(d_out, d_out_dtype, t * hidden + c0, row, width);
      float* dst = d_table + static_cast<size_t>(id) * hidden + c0;
      for (size_t c = 0; c < width; c++) dst[c] += row[c];
    }
  });
}

// --- RMSNorm ----------------------------------------------------------------------------------------------

void rms_norm(const void* x, DType x_dtype, const void* weight, DType w_dtype, void* out, DType out_dtype, float* rstd,
              size_t n, size_t hidden, float eps) {
  std::vector<float> w(hidden);
  load_row(weight, w_dtype, 0, w.data(), hidden);
  detail::for_rows(n, hidden, [&](size_t t) {
    float* row = detail::scratch(0, hidden);
    load_row(x, x_dtype, t * hidden, row, hidden);
    const float r = llama::rms_rstd(dot(row, row, hidden), static_cast<int>(hidden), eps);
    rstd[t] = r;
    for (size_t c = 0; c < hidden; c++) row[c] *= r;
    round_row(row, hidden, x_dtype);  // HF rounds x * rstd to x's dtype before the weight
    for (size_t c = 0; c < hidden; c++) row[c] = w[c] * row[c];
    store_row(row, out, out_dtype, t * hidden, hidden);
  });
}

// sum = x + delta rounded to dtype, then rms_norm(sum) row by row (the reference's two passes, fused per row).
void add_rms_norm(const void* x, const void* delta, void* sum, DType dtype, const void* weight, DType w_dtype, void* out,
                  float* rstd, size_t n, size_t hidden, float eps) {
  std::vector<float> w(hidden);
  load_row(weight, w_dtype, 0, w.data(), hidden);
  detail::for_rows(n, hidden, [&](size_t t) {
    float* row = detail::scratch(0, hidden);
    float* d = detail::scratch(1, hidden);
    load_row(x, dtype, t * hidden, row, hidden);
    load_row(delta, dtype, t * hidden, d, hidden);
    for (size_t c = 0; c < hidden; c++) row[c] += d[c];
    round_row(row, hidden, dtype);  // the stored sum, as rms_norm reads it back
    store_row(row, sum, dtype, t * hidden, hidden);
    const float r = llama::rms_rstd(dot(row, row, hidden), static_cast<int>(hidden), eps);
    rstd[t] = r;
    for (size_t c = 0; c < hidden; c++) row[c] *= r;
    round_row(row, hidden, dtype);
    for (size_t c = 0; c < hidden; c++) row[c] = w[c] * row[c];
    store_row(row, out, dtype, t * hidden, hidden);
  });
}

void rms_norm_backward(const void* d_out, DType d_out_dtype, const void* x, DType x_dtype, const void* weight,
                       DType w_dtype, const float* rstd, void* dx, DType dx_dtype, float* d_weight, size_t n,
                       size_t hidden, bool accumulate_dx) {
  std::vector<float> w(hidden);
  load_row(weight, w_dtype, 0, w.data(), hidden);
  detail::for_rows(n, hidden, [&](size_t t) {
    float* g = detail::scratch(0, hidden);
    float* xr = detail::scratch(1, hidden);
    float* gw = detail::scratch(2, hidden);
    load_row(d_out, d_out_dtype, t * hidden, g, hidden);
    load_row(x, x_dtype, t * hidden, xr, hidden);
    for (size_t c = 0; c < hidden; c++) gw[c] = g[c] * w[c];
    const float r = rstd[t];
    const float mean_gx = dot(gw, xr, hidden) / static_cast<float>(hidden);
    const float k = r * r * mean_gx;
    for (size_t c = 0; c < hidden; c++) gw[c] = r * (gw[c] - xr[c] * k);  // llama::rms_norm_dx
    if (accumulate_dx) {
      load_row(dx, dx_dtype, t * hidden, g, hidden);
      for (size_t c = 0; c < hidden; c++) gw[c] += g[c];
    }
    store_row(gw, dx, dx_dtype, t * hidden, hidden);
  });
  if (d_weight == nullptr) return;
  // d_weight += sum over rows of dOut * x * rstd, by fixed blocks of rows
  detail::ordered_column_sums(n, hidden, 64, d_weight, [&](size_t t, float* acc) {
    float* g = detail::scratch(0, hidden);
    float* xr = detail::scratch(1, hidden);
    load_row(d_out, d_out_dtype, t * hidden, g, hidden);
    load_row(x, x_dtype, t * hidden, xr, hidden);
    const float r = rstd[t];
    for (size_t c = 0; c < hidden; c++) acc[c] += g[c] * xr[c] * r;
  });
}

// --- RoPE -------------------------------------------------------------------------------------------------

// The first `heads` heads of each token row of `row_stride` elements (q and k of a fused q/k/v row in one pass).
void rope(void* x, DType dtype, const float* cos, const float* sin, size_t n, int seq_len, int heads, int head_dim,
          bool inverse, size_t row_stride) {
  const size_t width = static_cast<size_t>(heads) * head_dim;
  const int half = head_dim / 2;
  detail::for_rows(n, width, [&](size_t t) {
    float* row = detail::scratch(0, width);
    load_row(x, dtype, t * row_stride, row, width);
    const size_t pos = t % static_cast<size_t>(seq_len);
    const float* c = cos + pos * half;
    const float* s = sin + pos * half;
    for (int h = 0; h < heads; h++) {
      float* x1 = row + static_cast<size_t>(h) * head_dim;
      float* x2 = x1 + half;
      for (int i = 0; i < half; i++) {
        const float sn = inverse ? -s[i] : s[i];  // llama::rope_rotate
        const float y1 = x1[i] * c[i] - x2[i] * sn;
        const float y2 = x2[i] * c[i] + x1[i] * sn;
        x1[i] = y1;
        x2[i] = y2;
      }
    }
    store_row(row, x, dtype, t * row_stride, width);
  });
}

// --- SwiGLU and elementwise -------------------------------------------------------------------------------

// gate_up rows of [gate | up], 2 * inter elements each; out [rows, inter].
void swiglu(const void* gate_up, DType gate_up_dtype, void* out, DType out_dtype, size_t rows, size_t inter) {
  detail::for_rows(rows, 2 * inter, [&](size_t r) {
    float* g = detail::scratch(0, inter);
    float* u = detail::scratch(1, inter);
    load_row(gate_up, gate_up_dtype, r * 2 * inter, g, inter);
    load_row(gate_up, gate_up_dtype, r * 2 * inter + inter, u, inter);
    swiglu_row(g, u, g, inter);
    store_row(g, out, out_dtype, r * inter, inter);
  });
}

// d_gate_up may be gate_up itself: a row is loaded whole before any of it is written.
void swiglu_backward(const void* gate_up, DType gate_up_dtype, const void* d_out, DType d_out_dtype, void* d_gate_up,
                     DType d_gate_up_dtype, size_t rows, size_t inter) {
  detail::for_rows(rows, 2 * inter, [&](size_t r) {
    float* g = detail::scratch(0, inter);
    float* u = detail::scratch(1, inter);
    float* d = detail::scratch(2, inter);
    float* dg = detail::scratch(3, inter);
    load_row(gate_up, gate_up_dtype, r * 2 * inter, g, inter);
    load_row(gate_up, gate_up_dtype, r * 2 * inter + inter, u, inter);
    load_row(d_out, d_out_dtype, r * inter, d, inter);
    swiglu_backward_row(g, u, d, dg, u, inter);  // d_up overwrites up (read first, element by element)
    store_row(dg, d_gate_up, d_gate_up_dtype, r * 2 * inter, inter);
    store_row(u, d_gate_up, d_gate_up_dtype, r * 2 * inter + inter, inter);
  });
}

void add(const void* a, DType a_dtype, const void* b_, DType b_dtype, void* out, DType out_dtype, size_t n) {
  detail::for_chunks(n, [&](size_t b, size_t e) {
    float* x = detail::scratch(0, e - b);
    float* y = detail::scratch(1, e - b);
    load_row(a, a_dtype, b, x, e - b);
    load_row(b_, b_dtype, b, y, e - b);
    for (size_t i = 0; i < e - b; i++) x[i] += y[i];
    store_row(x, out, out_dtype, b, e - b);
  });
}

void add_bias(void* x, DType x_dtype, const void* bias, DType bias_dtype, size_t n, size_t channels) {
  std::vector<float> bv(channels);
  load_row(bias, bias_dtype, 0, bv.data(), channels);
  detail::for_rows(n / channels, channels, [&](size_t r) {
    float* row = detail::scratch(0, channels);
    load_row(x, x_dtype, r * channels, row, channels);
    for (size_t c = 0; c < channels; c++) row[c] += bv[c];
    store_row(row, x, x_dtype, r * channels, channels);
  });
}

// The first `channels` columns of rows of `row_stride` elements (a bias of one part of a fused projection).
void bias_backward(const void* d_out, DType d_out_dtype, float* d_bias, size_t rows, size_t channels,
                   size_t row_stride) {
  detail::ordered_column_sums(rows, channels, 64, d_bias, [&](size_t r, float* acc) {
    float* row = detail::scratch(0, channels);
    load_row(d_out, d_out_dtype, r * row_stride, row, channels);
    for (size_t c = 0; c < channels; c++) acc[c] += row[c];
  });
}

// --- cross-entropy, argmax, sum ---------------------------------------------------------------------------

// One row per task, in chunks of the row: its max, then the sum of exp(x - max), then (training) the
// gradient (softmax - onehot) * grad_scale written over the logits.
void cross_entropy(void* logits, DType dtype, const int32_t* labels, float* losses, size_t rows, size_t vocab,
                   float grad_scale) {
  constexpr size_t kPiece = 4096;
  parallel_for(static_cast<int64_t>(rows), [&](int64_t r_) {
    const size_t r = static_cast<size_t>(r_), base = r * vocab;
    const int32_t label = labels[r];
    float* buf = detail::scratch(0, kPiece);
    if (label < 0 || static_cast<size_t>(label) >= vocab) {
      losses[r] = label < 0 ? 0.0f : std::numeric_limits<float>::quiet_NaN();
      if (grad_scale != 0.0f) {
        std::fill(buf, buf + kPiece, 0.0f);
        for (size_t c = 0; c < vocab; c += kPiece) store_row(buf, logits, dtype, base + c, std::min(kPiece, vocab - c));
      }
      return;
    }
    float m = -INFINITY;
    for (size_t c = 0; c < vocab; c += kPiece) {
      const size_t len = std::min(kPiece, vocab - c);
      load_row(logits, dtype, base + c, buf, len);
      m = std::max(m, max_of(buf, len));
    }
    float l = 0.0f;
    if (m != -INFINITY) {
      for (size_t c = 0; c < vocab; c += kPiece) {
        const size_t len = std::min(kPiece, vocab - c);
        load_row(logits, dtype, base + c, buf, len);
        l += exp_sum(buf, len, m);
      }
    }
    const float lse = llama::softmax_lse(m, l);
    const float label_logit = load_as_f32(logits, dtype, base + static_cast<size_t>(label));
    losses[r] = lse - label_logit;
    if (grad_scale == 0.0f) return;
    for (size_t c = 0; c < vocab; c += kPiece) {
      const size_t len = std::min(kPiece, vocab - c);
      load_row(logits, dtype, base + c, buf, len);
      exp_scale(buf, len, lse, grad_scale);
      const size_t at = static_cast<size_t>(label);
      if (at >= c && at < c + len) buf[at - c] = llama::cross_entropy_grad(label_logit, lse, true, grad_scale);
      store_row(buf, logits, dtype, base + c, len);
    }
  });
}

void argmax_rows(const void* x, DType dtype, int32_t* out, size_t rows, size_t cols) {
  parallel_for(static_cast<int64_t>(rows), [&](int64_t r_) {
    const size_t r = static_cast<size_t>(r_);
    constexpr size_t kPiece = 4096;
    float* buf = detail::scratch(0, kPiece);
    float best_v = -INFINITY;
    int best_i = -1;
    for (size_t c0 = 0; c0 < cols; c0 += kPiece) {
      const size_t len = std::min(kPiece, cols - c0);
      load_row(x, dtype, r * cols + c0, buf, len);
      for (size_t c = 0; c < len; c++) {
        if (llama::argmax_better(buf[c], static_cast<int>(c0 + c), best_v, best_i)) {
          best_v = buf[c];
          best_i = static_cast<int>(c0 + c);
        }
      }
    }
    out[r] = best_i < 0 ? 0 : best_i;
  });
}

/** Sums fixed chunks in double, in parallel, then adds the partial sums in chunk order. */
template <typename ChunkSum>
double ordered_sum(size_t n, ChunkSum chunk_sum) {
  std::vector<double> partial(detail::chunks_of(n), 0.0);
  parallel_for(static_cast<int64_t>(partial.size()), [&](int64_t c) {
    const size_t b = static_cast<size_t>(c) * detail::kChunk;
    partial[static_cast<size_t>(c)] = chunk_sum(b, std::min(n, b + detail::kChunk));
  });
  double s = 0.0;
  for (double p : partial) s += p;
  return s;
}

double sum(const void* x, DType dtype, size_t n) {
  return ordered_sum(n, [&](size_t b, size_t e) {
    float* buf = detail::scratch(0, e - b);
    load_row(x, dtype, b, buf, e - b);
    return sum_f64(buf, e - b);
  });
}

// --- optimizer and tensor ops -----------------------------------------------------------------------------

// The same operations in the same order as optim::adamw_element (no fused multiply-adds), so an fp32 master
// and its rounded weight match the reference bit for bit.
void adamw(float* master, void* weight, DType weight_dtype, const void* grad, DType grad_dtype, float* m, float* v,
           size_t n, const ref::AdamWArgs& args) {
  const optim::AdamWStep step = ref::adamw_step(args);
  float* p = master != nullptr ? master : static_cast<float*>(weight);
  detail::for_chunks(n, [&](size_t b, size_t e) {
    float* g = detail::scratch(0, e - b);
    load_row(grad, grad_dtype, b, g, e - b);
    adamw_row(step, g, p + b, m + b, v + b, e - b);
    if (master != nullptr) store_row(p + b, weight, weight_dtype, b, e - b);
  });
}

double sum_squares(const void* x, DType dtype, size_t n) {
  return ordered_sum(n, [&](size_t b, size_t e) {
    float* buf = detail::scratch(0, e - b);
    load_row(x, dtype, b, buf, e - b);
    return sum_squares_f64(buf, e - b);
  });
}

void scale(void* x, DType dtype, size_t n, float factor) {
  detail::for_chunks(n, [&](size_t b, size_t e) {
    float* buf = detail::scratch(0, e - b);
    load_row(x, dtype, b, buf, e - b);
    for (size_t i = 0; i < e - b; i++) buf[i] *= factor;
    store_row(buf, x, dtype, b, e - b);
  });
}

// dst += src * factor in fp32, dst rounded to its dtype (a 16-bit gradient buffer accumulates in place).
void accumulate(void* dst, DType dst_dtype, const void* src, DType src_dtype, size_t n, float factor) {
  detail::for_chunks(n, [&](size_t b, size_t e) {
    float* buf = detail::scratch(0, e - b);
    load_row(src, src_dtype, b, buf, e - b);
    if (dst_dtype == DType::F32) {
      float* d = static_cast<float*>(dst) + b;
      for (size_t i = 0; i < e - b; i++) d[i] += buf[i] * factor;
      return;
    }
    float* d = detail::scratch(1, e - b);
    load_row(dst, dst_dtype, b, d, e - b);
    for (size_t i = 0; i < e - b; i++) d[i] += buf[i] * factor;
    store_row(d, dst, dst_dtype, b, e - b);
  });
}

void cast(const void* src, DType src_dtype, void* dst, DType dst_dtype, size_t n) {
  detail::for_chunks(n, [&](size_t b, size_t e) {
    float* buf = detail::scratch(0, e - b);
    load_row(src, src_dtype, b, buf, e - b);
    store_row(buf, dst, dst_dtype, b, e - b);
  });
}

void fill(void* dst, DType dtype, size_t n, float value) {
  if (dtype == DType::I32) {
    for (size_t i = 0; i < n; i++) store_from_f32(dst, dtype, i, value);
    return;
  }
  detail::for_chunks(n, [&](size_t b, size_t e) {
    float* buf = detail::scratch(0, e - b);
    std::fill(buf, buf + (e - b), value);
    store_row(buf, dst, dtype, b, e - b);
  });
}

#include "attention_impl.h"

inline KernelTable kernel_table(const char* name) {
  return KernelTable{name,          embedding,     embedding_backward, rms_norm,  add_rms_norm, rms_norm_backward, rope,
                     attention,     attention_backward, swiglu,      swiglu_backward, add,        add_bias,
                     bias_backward, cross_entropy, argmax_rows,  sum,       adamw,             sum_squares,
                     scale,         accumulate,    cast,         fill};
}
