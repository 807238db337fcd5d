// Causal grouped-query attention on the CPU, flash style: fp32 tiles of kTile queries by kTile keys, an online
// softmax, no [seq, seq] matrix. Forward keeps the log-sum-exp of each row; backward recomputes P from it.
// Included by kernels_impl.h (inside badam::engine::<isa>), after the row primitives.
//
// q, k, v, dq, dk, dv are token rows of q_stride / kv_stride elements (columns of a fused q/k/v projection);
// out and dOut are packed. Tiles are fp32 with the head dimension padded to a multiple of 16 (zeros), so tile_gemm's columns are whole
// vectors; padded keys and masked pairs get P = 0.

namespace attention_detail {

constexpr int kTile = 64;

inline int padded(int d) { return (d + 15) / 16 * 16; }

/** Offset of head h of token (b, s) in token rows of `stride` elements (q, k, v may be columns of one fused row). */
inline size_t offset(const ref::AttentionDims& d, int b, int s, size_t stride, int h) {
  return ref::head_index(d, stride, b, s, h, 0);
}

/** Elements per token row of out and dOut (packed). */
inline size_t packed_stride(const ref::AttentionDims& d) { return static_cast<size_t>(d.heads) * d.head_dim; }

/** rows x head_dim of one head (tokens s0 ..) into fp32 [rows, dp], zero-padded; rows past seq_len are zero. */
inline void load_head_rows(const void* x, DType t, const ref::AttentionDims& d, int b, int s0, int rows, size_t stride,
                           int h, float* out, int dp) {
  for (int r = 0; r < rows; r++) {
    float* dst = out + static_cast<size_t>(r) * dp;
    if (s0 + r < d.seq_len) load_row(x, t, offset(d, b, s0 + r, stride, h), dst, d.head_dim);
    else std::fill(dst, dst + d.head_dim, 0.0f);
    std::fill(dst + d.head_dim, dst + dp, 0.0f);
  }
}

/** dst[c, r] = src[r, c] for src [rows, cols] (leading dimension lds) into dst (leading dimension ldd). */
inline void transpose(const float* src, int rows, int cols, int lds, float* dst, int ldd) {
  for (int r = 0; r < rows; r++)
    for (int c = 0; c < cols; c++) dst[static_cast<size_t>(c) * ldd + r] = src[static_cast<size_t>(r) * lds + c];
}

/** Keys a query tile [i0, i0 + rows) can see at all: [0, end). */
inline int key_end(const ref::AttentionDims& d, int length, int i0, int rows) {
  return d.causal ? std::min(length, i0 + rows) : length;
}

}  // namespace attention_detail

// Tasks: (batch, head, query tile). Each walks the visible key tiles with an online softmax.
void attention(const void* q, const void* k, const void* v, void* out, float* lse, DType dtype,
               const ref::AttentionDims& d) {
  using namespace attention_detail;
  const int T = kTile, dp = padded(d.head_dim);
  const int q_tiles = (d.seq_len + T - 1) / T;
  const int group = d.heads / d.kv_heads;
  const size_t q_stride = ref::q_stride_of(d), kv_stride = ref::kv_stride_of(d);
  parallel_for(static_cast<int64_t>(d.batch) * d.heads * q_tiles, [&](int64_t task) {
    const int qt = static_cast<int>(task % q_tiles);
    const int h = static_cast<int>((task / q_tiles) % d.heads);
    const int b = static_cast<int>(task / q_tiles / d.heads);
    const int kvh = h / group;
    const int length = llama::row_length(d.lengths, b, d.seq_len);
    const int i0 = qt * T, rows = std::min(T, d.seq_len - i0);
    float* Q = detail::scratch(0, static_cast<size_t>(T) * dp);
    float* Kt = detail::scratch(1, static_cast<size_t>(dp) * T);
    float* V = detail::scratch(2, static_cast<size_t>(T) * dp);
    float* S = detail::scratch(3, static_cast<size_t>(T) * T);
    float* O = detail::scratch(4, static_cast<size_t>(T) * dp);
    float* K = detail::scratch(5, static_cast<size_t>(T) * dp);
    float m[kTile], l[kTile];
    load_head_rows(q, dtype, d, b, i0, rows, q_stride, h, Q, dp);
    std::fill(O, O + static_cast<size_t>(T) * dp, 0.0f);
    for (int i = 0; i < T; i++) m[i] = -INFINITY, l[i] = 0.0f;
    const int kend = key_end(d, length, i0, rows);
    for (int j0 = 0; j0 < kend; j0 += T) {
      const int keys = std::min(T, kend - j0);
      load_head_rows(k, dtype, d, b, j0, keys, kv_stride, kvh, K, dp);
      std::fill(K + static_cast<size_t>(keys) * dp, K + static_cast<size_t>(T) * dp, 0.0f);
      transpose(K, T, dp, dp, Kt, T);
      load_head_rows(v, dtype, d, b, j0, keys, kv_stride, kvh, V, dp);
      std::fill(V + static_cast<size_t>(keys) * dp, V + static_cast<size_t>(T) * dp, 0.0f);
      // S [rows, T] = Q K^T, then scaled and masked
      tile_gemm(rows, T, dp, Q, dp, Kt, T, S, T, false);
      for (int i = 0; i < rows; i++) {
        float* s = S + static_cast<size_t>(i) * T;
        for (int j = 0; j < T; j++)
          s[j] = j < keys && llama::key_visible(j0 + j, i0 + i, length, d.causal) ? s[j] * d.scale : -INFINITY;
        const float mx = max_of(s, T);
        const float m_new = std::max(m[i], mx);
        if (m_new == -INFINITY) {  // nothing visible yet in this row
          std::fill(s, s + T, 0.0f);
          continue;
        }
        const float alpha = llama::softmax_rescale(m[i], m_new);
        l[i] = l[i] * alpha + exp_sum(s, T, m_new);  // s becomes P (masked entries exp(-inf) = 0)
        m[i] = m_new;
        float* o = O + static_cast<size_t>(i) * dp;
        if (alpha != 1.0f)
          for (int c = 0; c < dp; c++) o[c] *= alpha;
      }
      // O += P V
      tile_gemm(rows, dp, T, S, T, V, dp, O, dp, true);
    }
    for (int i = 0; i < rows; i++) {
      float* o = O + static_cast<size_t>(i) * dp;
      for (int c = 0; c < d.head_dim; c++) o[c] = llama::attention_output(o[c], l[i]);
      store_row(o, out, dtype, offset(d, b, i0 + i, packed_stride(d), h), d.head_dim);
      lse[(static_cast<size_t>(b) * d.heads + h) * d.seq_len + i0 + i] = llama::softmax_lse(m[i], l[i]);
    }
  });
}

// Tasks: (batch, kv head). A task owns dk and dv of its kv head (summed over the group's query heads) and dq
// of the group's heads, so no two threads write one element and no atomics are needed. K, K^T and V^T of
// the kv head are converted to fp32 once per task.
void attention_backward(const void* q, const void* k, const void* v, const void* out, const void* d_out,
                        const float* lse, void* dq, void* dk, void* dv, float* d_rows, DType dtype,
                        const ref::AttentionDims& d) {
  const size_t q_stride = ref::q_stride_of(d), kv_stride = ref::kv_stride_of(d);
  using namespace attention_detail;
  const int T = kTile, dp = padded(d.head_dim);
  const int S_pad = (d.seq_len + T - 1) / T * T;
  const int group = d.heads / d.kv_heads;
  parallel_for(static_cast<int64_t>(d.batch) * d.kv_heads, [&](int64_t task) {
    const int kvh = static_cast<int>(task % d.kv_heads);
    const int b = static_cast<int>(task / d.kv_heads);
    const int length = llama::row_length(d.lengths, b, d.seq_len);
    const size_t kv_size = static_cast<size_t>(S_pad) * dp;
    float* K = detail::scratch(0, kv_size);
    float* Kt = detail::scratch(1, kv_size);
    float* Vt = detail::scratch(2, kv_size);
    float* dK = detail::scratch(3, kv_size);
    float* dV = detail::scratch(4, kv_size);
    float* tiles = detail::scratch(5, static_cast<size_t>(4) * T * dp + static_cast<size_t>(6) * T * T);
    float* Q = tiles;
    float* dO = Q + static_cast<size_t>(T) * dp;
    float* O = dO + static_cast<size_t>(T) * dp;
    float* dQ = O + static_cast<size_t>(T) * dp;
    float* P = dQ + static_cast<size_t>(T) * dp;
    float* dP = P + static_cast<size_t>(T) * T;
    float* Pt = dP + static_cast<size_t>(T) * T;
    float* dSt = Pt + static_cast<size_t>(T) * T;
    load_head_rows(k, dtype, d, b, 0, S_pad, kv_stride, kvh, K, dp);
    transpose(K, S_pad, dp, dp, Kt, S_pad);
    float* V = dK;  // V [S_pad, dp] passes through dK's buffer on its way to V^T
    load_head_rows(v, dtype, d, b, 0, S_pad, kv_stride, kvh, V, dp);
    transpose(V, S_pad, dp, dp, Vt, S_pad);
    std::fill(dK, dK + kv_size, 0.0f);
    std::fill(dV, dV + kv_size, 0.0f);
    for (int h = kvh * group; h < (kvh + 1) * group; h++) {
      for (int i0 = 0; i0 < d.seq_len; i0 += T) {
        const int rows = std::min(T, d.seq_len - i0);
        const size_t row0 = (static_cast<size_t>(b) * d.heads + h) * d.seq_len + i0;
        load_head_rows(q, dtype, d, b, i0, rows, q_stride, h, Q, dp);
        load_head_rows(d_out, dtype, d, b, i0, rows, packed_stride(d), h, dO, dp);
        load_head_rows(out, dtype, d, b, i0, rows, packed_stride(d), h, O, dp);
        std::fill(Q + static_cast<size_t>(rows) * dp, Q + static_cast<size_t>(T) * dp, 0.0f);
        std::fill(dO + static_cast<size_t>(rows) * dp, dO + static_cast<size_t>(T) * dp, 0.0f);
        float D[kTile];
        for (int i = 0; i < rows; i++) {
          D[i] = dot(dO + static_cast<size_t>(i) * dp, O + static_cast<size_t>(i) * dp, d.head_dim);
          d_rows[row0 + i] = D[i];
        }
        std::fill(dQ, dQ + static_cast<size_t>(T) * dp, 0.0f);
        const int kend = key_end(d, length, i0, rows);
        for (int j0 = 0; j0 < kend; j0 += T) {
          const int keys = std::min(T, kend - j0);
          // P [T, T] = exp(Q K^T scale - lse), masked; dP = dO V^T
          tile_gemm(T, T, dp, Q, dp, Kt + j0, S_pad, P, T, false);
          tile_gemm(T, T, dp, dO, dp, Vt + j0, S_pad, dP, T, false);
          for (int i = 0; i < T; i++) {
            float* p = P + static_cast<size_t>(i) * T;
            float* dp_row = dP + static_cast<size_t>(i) * T;
            if (i >= rows) {
              std::fill(p, p + T, 0.0f);
              std::fill(dp_row, dp_row + T, 0.0f);
              continue;
            }
            const float row_lse = lse[row0 + i];
            for (int j = 0; j < T; j++)
              p[j] = j < keys && llama::key_visible(j0 + j, i0 + i, length, d.causal) ? p[j] * d.scale : -INFINITY;
            exp_sum(p, T, row_lse);  // P = attention_prob(score, lse)
            // dS = P (dP - D) scale, into dP's row
            for (int j = 0; j < T; j++) dp_row[j] = llama::attention_d_score(p[j], dp_row[j], D[i], d.scale);
          }
          // dV += P^T dO; dK += dS^T Q; dQ += dS K
          transpose(P, T, T, T, Pt, T);
          tile_gemm(T, dp, T, Pt, T, dO, dp, dV + static_cast<size_t>(j0) * dp, dp, true);
          transpose(dP, T, T, T, dSt, T);
          tile_gemm(T, dp, T, dSt, T, Q, dp, dK + static_cast<size_t>(j0) * dp, dp, true);
          tile_gemm(T, dp, T, dP, T, K + static_cast<size_t>(j0) * dp, dp, dQ, dp, true);
        }
        for (int i = 0; i < rows; i++)
          store_row(dQ + static_cast<size_t>(i) * dp, dq, dtype, offset(d, b, i0 + i, q_stride, h), d.head_dim);
      }
    }
    for (int s = 0; s < d.seq_len; s++) {
      store_row(dK + static_cast<size_t>(s) * dp, dk, dtype, offset(d, b, s, kv_stride, kvh), d.head_dim);
      store_row(dV + static_cast<size_t>(s) * dp, dv, dtype, offset(d, b, s, kv_stride, kvh), d.head_dim);
    }
  });
}
