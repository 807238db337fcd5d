// The tensor-core (WMMA) attention kernels: bf16 / fp16 at head dim 64 or 128 (attention.cu picks them where
// they apply). The per-element math is llama_math.h's, shared with the CPU reference and the SIMT kernels.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <cstdint>

#include "attention_common.cuh"
#include "kernel_common.cuh"
#include "llama_math.h"

namespace badam::cuda_llama {

// --- attention on tensor cores (bf16 / fp16, head dim 64 or 128) -------------------------------------------
//
// FlashAttention-2's structure with the WMMA API (16x16x16 bf16 / fp16 fragments, fp32 accumulators, sm_80+):
// a CTA of 4 warps owns a tile of 64 rows and walks the 64-row tiles of the other side, every GEMM on tensor
// cores, every softmax statistic in fp32 from shared memory (the fragment layout is never assumed: row
// statistics read the scores back from shared memory, the portable WMMA way). Same semantics as the SIMT
// kernels above (GQA, causal, padding lengths, empty rows give 0, lse [batch, heads, seq_len]), and the same
// llama_math.h formulas; only the operands of the products are 16-bit (P and dS rounded to T like
// FlashAttention does), the sums are fp32.
//
// Shared memory, ld16 = D + 8 (16-bit tiles), lds = 64 + 4, ldo = D + 4 (fp32); the pads move each row by 16
// bytes against bank conflicts and keep every fragment pointer 32-byte aligned. Per CTA (bytes):
//   forward:  q, k, v [64][ld16] T + s [64][lds] f32 + o [64][ldo] f32  = 103,424 (D 128), 62,464 (D 64)
//   dq:       q, dO, k, v [64][ld16] T + s, dp [64][lds] f32 + lse, D   = 104,960 (D 128), 72,192 (D 64)
//   dk / dv:  k, v, q, dO [64][ld16] T + s, dp [64][lds] f32 + lse, D   = 104,960 (D 128), 72,192 (D 64)
// WMMA wants 32-byte aligned fragment pointers: these kernels have no static __shared__ variables, so their
// dynamic shared memory starts at the base of the CTA's window (aligned far beyond that), and every offset
// above is a multiple of 32 bytes. P (or P^T, dS, dS^T) is written as T over the fp32 rows it comes from, so
// it costs no memory. Occupancy (4 warps a CTA): H100 / H200 (228 KiB an SM, 1 KiB reserved a CTA) hold 2
// CTAs at D 128, 3 at D 64; A100 (164 KiB) 1 at D 128, 2 at D 64. Registers (ptxas -v, CUDA 13): 72 to 255
// a thread on sm_80 / sm_90, no spills (the dk / dv kernel holds 2 * D / 16 accumulator fragments, the
// forward keeps its 16 query rows as D / 16 fragments); even 256 a thread lets 2 CTAs of 128 threads share an
// SM's 64K registers, so shared memory sets the occupancy.

namespace {

namespace wmma = nvcuda::wmma;

constexpr int kTcTile = 64;                  // rows a CTA owns = rows of each tile it walks
constexpr int kTcWarps = 4;                  // a warp owns 16 of the CTA's rows
constexpr int kTcThreads = kTcWarps * 32;
constexpr int kFrag = 16;                    // WMMA m = n = k
constexpr int kLds = kTcTile + 4;            // fp32 score tiles' row stride
constexpr int kLdp = 2 * kLds;               // the same rows read as T (P written over the scores)

template <typename T>
using FragA = wmma::fragment<wmma::matrix_a, kFrag, kFrag, kFrag, T, wmma::row_major>;
template <typename T>
using FragBRow = wmma::fragment<wmma::matrix_b, kFrag, kFrag, kFrag, T, wmma::row_major>;
template <typename T>
using FragBCol = wmma::fragment<wmma::matrix_b, kFrag, kFrag, kFrag, T, wmma::col_major>;
using FragAcc = wmma::fragment<wmma::accumulator, kFrag, kFrag, kFrag, float>;

template <typename T>
__device__ __forceinline__ T from_f32(float x);
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <>
__device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half_rn(x); }

/** Row stride of a 16-bit [64][D] tile. */
__host__ __device__ constexpr int ld16(int head_dim) { return head_dim + 8; }

/** Bytes of shared memory of each tensor-core kernel at head dim D (the table above). */
constexpr size_t tc_forward_bytes(int D) { return 3 * kTcTile * ld16(D) * 2 + kTcTile * kLds * 4 + kTcTile * (D + 4) * 4; }
constexpr size_t tc_dq_bytes(int D) { return 4 * kTcTile * ld16(D) * 2 + 2 * kTcTile * kLds * 4 + 2 * kTcTile * 4; }
constexpr size_t tc_dkv_bytes(int D) { return tc_dq_bytes(D); }
static_assert(tc_forward_bytes(128) == 103424 && tc_dq_bytes(128) == 104960 && tc_dkv_bytes(128) == 104960,
              "the shared memory table above");

/** tile[r][i] (ld16(D)) = head `head` of token (b, s0 + r) for r < 64, 16 bytes at a time; 0 past the sequence. */
template <typename T, int D>
__device__ void tc_load_tile(T* tile, const T* src, int b, int s0, int seq_len, int heads_in_row, int head) {
  constexpr int kChunks = D / 8;  // 8 elements = 16 bytes
  for (int e = threadIdx.x; e < kTcTile * kChunks; e += blockDim.x) {
    const int r = e / kChunks, c = (e % kChunks) * 8, s = s0 + r;
    uint4 chunk = make_uint4(0, 0, 0, 0);
    if (s < seq_len) {
      chunk = *reinterpret_cast<const uint4*>(src + ((static_cast<size_t>(b) * seq_len + s) * heads_in_row + head) * D + c);
    }
    *reinterpret_cast<uint4*>(tile + r * ld16(D) + c) = chunk;
  }
}

/** The D / 16 fragments of 16 rows of a [.][D] T tile (ld16), to keep in registers across the tiles walked. */
template <typename T, int D>
__device__ __forceinline__ void tc_load_rows(FragA<T>* frags, const T* rows) {
#pragma unroll
  for (int kk = 0; kk < D / kFrag; kk++) wmma::load_matrix_sync(frags[kk], rows + kk * kFrag, ld16(D));
}

/** out[16][64] (fp32, ld kLds) = a b[64][D]^T, a the 16 rows held as fragments (tc_load_rows). */
template <typename T, int D>
__device__ __forceinline__ void tc_frags_times_tile_t(float* out, const FragA<T>* a, const T* b) {
#pragma unroll 1  // one column block at a time, as below
  for (int n = 0; n < kTcTile / kFrag; n++) {
    FragAcc acc;
    wmma::fill_fragment(acc, 0.0f);
#pragma unroll
    for (int kk = 0; kk < D / kFrag; kk++) {
      FragBCol<T> fb;  // b's rows as columns: element (k, n) at b[n * ld + k]
      wmma::load_matrix_sync(fb, b + n * kFrag * ld16(D) + kk * kFrag, ld16(D));
      wmma::mma_sync(acc, a[kk], fb, acc);
    }
    wmma::store_matrix_sync(out + n * kFrag, acc, kLds, wmma::mem_row_major);
  }
}

/** out[16][64] (fp32, ld kLds) = a[16][D] b[64][D]^T: 16 rows of a against the 64 rows of b (both T, ld16). */
template <typename T, int D>
__device__ __forceinline__ void tc_rows_times_tile_t(float* out, const T* a, const T* b) {
#pragma unroll 1  // one column block at a time: unrolled, the dk / dv kernel spills at D 128 on sm_80 (ptxas -v)
  for (int n = 0; n < kTcTile / kFrag; n++) {
    FragAcc acc;
    wmma::fill_fragment(acc, 0.0f);
#pragma unroll
    for (int kk = 0; kk < D / kFrag; kk++) {
      FragA<T> fa;
      FragBCol<T> fb;  // b's rows as columns: element (k, n) at b[n * ld + k]
      wmma::load_matrix_sync(fa, a + kk * kFrag, ld16(D));
      wmma::load_matrix_sync(fb, b + n * kFrag * ld16(D) + kk * kFrag, ld16(D));
      wmma::mma_sync(acc, fa, fb, acc);
    }
    wmma::store_matrix_sync(out + n * kFrag, acc, kLds, wmma::mem_row_major);
  }
}

/** acc[n] += p[16][64] (T, ld kLdp) b[64][D] (T, ld16) for the D / 16 column blocks n of the result. */
template <typename T, int D>
__device__ __forceinline__ void tc_rows_times_tile(FragAcc* acc, const T* p, const T* b) {
#pragma unroll
  for (int kk = 0; kk < kTcTile / kFrag; kk++) {
    FragA<T> fa;
    wmma::load_matrix_sync(fa, p + kk * kFrag, kLdp);
#pragma unroll
    for (int n = 0; n < D / kFrag; n++) {
      FragBRow<T> fb;
      wmma::load_matrix_sync(fb, b + kk * kFrag * ld16(D) + n * kFrag, ld16(D));
      wmma::mma_sync(acc[n], fa, fb, acc[n]);
    }
  }
}

/** Writes 16 rows of accumulators through `staging` (fp32, ld D + 4, the warp's own) as T rows of dst. */
template <typename T, int D>
__device__ void tc_store_rows(const FragAcc* acc, float* staging, T* dst, const ref::AttentionDims& d, int b, int s0,
                              int heads_in_row, int head) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int n = 0; n < D / kFrag; n++) wmma::store_matrix_sync(staging + n * kFrag, acc[n], D + 4, wmma::mem_row_major);
  __syncwarp();
  for (int e = lane; e < kFrag * D; e += 32) {
    const int r = e / D, i = e % D, s = s0 + r;
    if (s < d.seq_len) dst[((static_cast<size_t>(b) * d.seq_len + s) * heads_in_row + head) * D + i] = from_f32<T>(staging[r * (D + 4) + i]);
  }
  __syncwarp();  // staging is read before it is written again
}

dim3 tc_grid(const ref::AttentionDims& d, int heads) {
  return dim3(static_cast<unsigned>((d.seq_len + kTcTile - 1) / kTcTile), static_cast<unsigned>(heads),
              static_cast<unsigned>(d.batch));
}

/** Keys [0, end) that some query of the 64-row tile at q0 can see. */
__device__ __forceinline__ int tc_key_end(const ref::AttentionDims& d, int q0, int length) {
  return d.causal ? min(length, min(q0 + kTcTile, d.seq_len)) : length;
}

// q, out [N, heads * D]; k, v [N, kv_heads * D]; lse [batch, heads, seq_len]; T = __nv_bfloat16 or __half.
// grid (ceil(seq_len / 64), heads, batch), 128 threads (4 warps, 16 query rows each), tc_forward_bytes(D).
// Per key tile: S = Q K^T (tensor cores, fp32 in shared), the online softmax of each row in fp32 (a lane owns
// keys lane and lane + 32 of the warp's 16 rows), P as T over S, O rescaled in shared, O += P V (tensor cores).
template <typename T, int D>
__global__ void __launch_bounds__(kTcThreads) attention_forward_tc_kernel(const T* q, const T* k, const T* v, T* out,
                                                                          float* lse, ref::AttentionDims d) {
  extern __shared__ float smem[];
  constexpr int kLdo = D + 4;
  T* q_tile = reinterpret_cast<T*>(smem);
  T* k_tile = q_tile + kTcTile * ld16(D);
  T* v_tile = k_tile + kTcTile * ld16(D);
  float* s_tile = reinterpret_cast<float*>(v_tile + kTcTile * ld16(D));
  float* o_tile = s_tile + kTcTile * kLds;
  const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * kTcTile;
  const int kvh = h / (d.heads / d.kv_heads);
  const int length = llama::row_length(d.lengths, b, d.seq_len);
  const int lane = threadIdx.x & 31, row0 = (threadIdx.x >> 5) * kFrag;
  float* s_rows = s_tile + row0 * kLds;           // the warp's 16 x 64 scores
  T* p_rows = reinterpret_cast<T*>(s_rows);       // ... and its probabilities over them (ld kLdp)
  float* o_rows = o_tile + row0 * kLdo;           // the warp's 16 x D output accumulator

  tc_load_tile<T, D>(q_tile, q, b, q0, d.seq_len, d.heads, h);
  for (int e = lane; e < kFrag * D; e += 32) o_rows[(e / D) * kLdo + e % D] = 0.0f;
  __syncwarp();
  float m[kFrag], l[kFrag];  // the running max and sum of each of the warp's rows (the same in every lane)
#pragma unroll
  for (int r = 0; r < kFrag; r++) {
    m[r] = -INFINITY;
    l[r] = 0.0f;
  }

  FragA<T> q_frags[D / kFrag];  // the warp's 16 query rows, read from shared memory once
  __syncthreads();
  tc_load_rows<T, D>(q_frags, q_tile + row0 * ld16(D));

  const int key_end = tc_key_end(d, q0, length);
  for (int k0 = 0; k0 < key_end; k0 += kTcTile) {
    __syncthreads();  // the previous k, v tiles are consumed
    tc_load_tile<T, D>(k_tile, k, b, k0, d.seq_len, d.kv_heads, kvh);
    tc_load_tile<T, D>(v_tile, v, b, k0, d.seq_len, d.kv_heads, kvh);
    __syncthreads();
    tc_frags_times_tile_t<T, D>(s_rows, q_frags, k_tile);
    __syncwarp();
    float p[kFrag][2], rescale[kFrag];
#pragma unroll
    for (int r = 0; r < kFrag; r++) {
      const int s = q0 + row0 + r;
      float sc[2];
#pragma unroll
      for (int c = 0; c < 2; c++) {
        const int key = k0 + lane + 32 * c;
        const bool visible = s < d.seq_len && llama::key_visible(key, s, length, d.causal);
        sc[c] = visible ? s_rows[r * kLds + lane + 32 * c] * d.scale : -INFINITY;
      }
      const float m_new = fmaxf(m[r], warp_max(fmaxf(sc[0], sc[1])));
      rescale[r] = 1.0f;
      p[r][0] = p[r][1] = 0.0f;
      if (m_new == -INFINITY) continue;  // nothing visible to this row yet (uniform across the warp)
      rescale[r] = llama::softmax_rescale(m[r], m_new);
      p[r][0] = llama::attention_prob(sc[0], m_new);  // exp(-inf) = 0 for masked keys
      p[r][1] = llama::attention_prob(sc[1], m_new);
      l[r] = l[r] * rescale[r] + warp_sum(p[r][0] + p[r][1]);
      m[r] = m_new;
    }
    __syncwarp();  // every lane has read its scores before P is written over them
#pragma unroll
    for (int r = 0; r < kFrag; r++) {
      p_rows[r * kLdp + lane] = from_f32<T>(p[r][0]);
      p_rows[r * kLdp + lane + 32] = from_f32<T>(p[r][1]);
      if (rescale[r] != 1.0f) {  // the same in every lane: the row's max moved
        for (int i = lane; i < D; i += 32) o_rows[r * kLdo + i] *= rescale[r];
      }
    }
    __syncwarp();
    FragAcc acc[D / kFrag];
#pragma unroll
    for (int n = 0; n < D / kFrag; n++) wmma::load_matrix_sync(acc[n], o_rows + n * kFrag, kLdo, wmma::mem_row_major);
    tc_rows_times_tile<T, D>(acc, p_rows, v_tile);
#pragma unroll
    for (int n = 0; n < D / kFrag; n++) wmma::store_matrix_sync(o_rows + n * kFrag, acc[n], kLdo, wmma::mem_row_major);
    __syncwarp();
  }

#pragma unroll
  for (int r = 0; r < kFrag; r++) {
    const int s = q0 + row0 + r;
    if (s >= d.seq_len) continue;
    for (int i = lane; i < D; i += 32) {
      out[head_at(d, b, s, d.heads, h, i)] = from_f32<T>(llama::attention_output(o_rows[r * kLdo + i], l[r]));
    }
    if (lane == 0) lse[(static_cast<size_t>(b) * d.heads + h) * d.seq_len + s] = llama::softmax_lse(m[r], l[r]);
  }
}

/**
 * dS (or dS^T) of a warp's 16 rows, written as T over the fp32 dP rows, and P as T over the score rows when
 * `p_out`: from scores and dP (fp32, ld kLds) of the rows; `query_of(r, c)` / `key_of(r, c)` say which query
 * and key element (r, c) is, `row_lse(r, c)` / `row_d(r, c)` its query's lse and D. Four passes of 16
 * columns (a lane owns column lane % 16 of 8 rows), so a lane holds 16 values, not 64, beside the dk / dv
 * kernel's accumulators: a pass's T values cover the bytes of fp32 columns read before, never later ones.
 */
template <typename T, typename Query, typename Key, typename Lse, typename DRow>
__device__ __forceinline__ void tc_probs_and_d_scores(float* s_rows, float* dp_rows, bool p_out, const ref::AttentionDims& d,
                                                      int length, Query query_of, Key key_of, Lse row_lse, DRow row_d) {
  const int lane = threadIdx.x & 31;
  constexpr int kRowsPerLane = kFrag / 2;
#pragma unroll
  for (int pass = 0; pass < kTcTile / 16; pass++) {
    const int c = pass * 16 + (lane & 15), r0 = lane >> 4;  // rows r0, r0 + 2, ..., r0 + 14
    float p[kRowsPerLane], ds[kRowsPerLane];
#pragma unroll
    for (int i = 0; i < kRowsPerLane; i++) {
      const int r = r0 + 2 * i, s = query_of(r, c);
      const bool visible = s < d.seq_len && llama::key_visible(key_of(r, c), s, length, d.causal);
      p[i] = visible ? llama::attention_prob(s_rows[r * kLds + c] * d.scale, row_lse(r, c)) : 0.0f;
      ds[i] = visible ? llama::attention_d_score(p[i], dp_rows[r * kLds + c], row_d(r, c), d.scale) : 0.0f;
    }
    __syncwarp();  // the pass's fp32 values are read by every lane before T values go over them
#pragma unroll
    for (int i = 0; i < kRowsPerLane; i++) {
      const int r = r0 + 2 * i;
      reinterpret_cast<T*>(dp_rows)[r * kLdp + c] = from_f32<T>(ds[i]);
      if (p_out) reinterpret_cast<T*>(s_rows)[r * kLdp + c] = from_f32<T>(p[i]);
    }
    __syncwarp();
  }
}

// dq [N, heads * D] = dS K over the visible keys, dS = P (dP - D) scale, P = exp(S scale - lse), dP = dOut V^T.
// grid (ceil(seq_len / 64), heads, batch), 128 threads (a warp owns 16 query rows), tc_dq_bytes(D).
// No atomics: a CTA owns its rows; dq accumulates in fragments over the key tiles.
template <typename T, int D>
__global__ void __launch_bounds__(kTcThreads) attention_dq_tc_kernel(const T* q, const T* k, const T* v, const T* d_out,
                                                                     const float* lse, const float* d_rows, T* dq,
                                                                     ref::AttentionDims d) {
  extern __shared__ float smem[];
  T* q_tile = reinterpret_cast<T*>(smem);
  T* do_tile = q_tile + kTcTile * ld16(D);
  T* k_tile = do_tile + kTcTile * ld16(D);
  T* v_tile = k_tile + kTcTile * ld16(D);
  float* s_tile = reinterpret_cast<float*>(v_tile + kTcTile * ld16(D));
  float* dp_tile = s_tile + kTcTile * kLds;
  float* lse_tile = dp_tile + kTcTile * kLds;  // lse and D of the 64 rows: shared, as a lane reads several rows
  float* d_tile = lse_tile + kTcTile;
  const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * kTcTile;
  const int kvh = h / (d.heads / d.kv_heads);
  const int length = llama::row_length(d.lengths, b, d.seq_len);
  const int row0 = (threadIdx.x >> 5) * kFrag;
  float* s_rows = s_tile + row0 * kLds;
  float* dp_rows = dp_tile + row0 * kLds;

  tc_load_tile<T, D>(q_tile, q, b, q0, d.seq_len, d.heads, h);
  tc_load_tile<T, D>(do_tile, d_out, b, q0, d.seq_len, d.heads, h);
  if (threadIdx.x < kTcTile) {
    const int s = q0 + threadIdx.x;
    const size_t row = (static_cast<size_t>(b) * d.heads + h) * d.seq_len + s;
    lse_tile[threadIdx.x] = s < d.seq_len ? lse[row] : 0.0f;
    d_tile[threadIdx.x] = s < d.seq_len ? d_rows[row] : 0.0f;
  }
  FragAcc acc[D / kFrag];
#pragma unroll
  for (int n = 0; n < D / kFrag; n++) wmma::fill_fragment(acc[n], 0.0f);

  const int key_end = tc_key_end(d, q0, length);
  for (int k0 = 0; k0 < key_end; k0 += kTcTile) {
    __syncthreads();
    tc_load_tile<T, D>(k_tile, k, b, k0, d.seq_len, d.kv_heads, kvh);
    tc_load_tile<T, D>(v_tile, v, b, k0, d.seq_len, d.kv_heads, kvh);
    __syncthreads();
    tc_rows_times_tile_t<T, D>(s_rows, q_tile + row0 * ld16(D), k_tile);
    tc_rows_times_tile_t<T, D>(dp_rows, do_tile + row0 * ld16(D), v_tile);
    __syncwarp();
    tc_probs_and_d_scores<T>(
        s_rows, dp_rows, false, d, length, [&](int r, int) { return q0 + row0 + r; }, [&](int, int c) { return k0 + c; },
        [&](int r, int) { return lse_tile[row0 + r]; }, [&](int r, int) { return d_tile[row0 + r]; });
    tc_rows_times_tile<T, D>(acc, reinterpret_cast<const T*>(dp_rows), k_tile);
  }
  __syncthreads();  // k, v are consumed: their memory stages the result
  tc_store_rows<T, D>(acc, reinterpret_cast<float*>(k_tile) + row0 * (D + 4), dq, d, b, q0 + row0, d.heads, h);
}

// dk = dS^T Q and dv = P^T dOut [N, kv_heads * D] for 64 keys of one kv head, summed over the query heads of
// its group and every query tile that sees the keys. grid (ceil(seq_len / 64), kv_heads, batch), 128 threads
// (a warp owns 16 keys), tc_dkv_bytes(D). Deterministic, no atomics: dk, dv accumulate in fragments.
template <typename T, int D>
__global__ void __launch_bounds__(kTcThreads) attention_dkv_tc_kernel(const T* q, const T* k, const T* v, const T* d_out,
                                                                      const float* lse, const float* d_rows, T* dk, T* dv,
                                                                      ref::AttentionDims d) {
  extern __shared__ float smem[];
  T* k_tile = reinterpret_cast<T*>(smem);
  T* v_tile = k_tile + kTcTile * ld16(D);
  T* q_tile = v_tile + kTcTile * ld16(D);
  T* do_tile = q_tile + kTcTile * ld16(D);
  float* st_tile = reinterpret_cast<float*>(do_tile + kTcTile * ld16(D));  // S^T: [key][query]
  float* dpt_tile = st_tile + kTcTile * kLds;                              // dP^T
  float* lse_tile = dpt_tile + kTcTile * kLds;
  float* d_tile = lse_tile + kTcTile;
  const int b = blockIdx.z, kvh = blockIdx.y, k0 = blockIdx.x * kTcTile;
  const int group = d.heads / d.kv_heads;
  const int length = llama::row_length(d.lengths, b, d.seq_len);
  const int key0 = (threadIdx.x >> 5) * kFrag;
  float* st_rows = st_tile + key0 * kLds;
  float* dpt_rows = dpt_tile + key0 * kLds;

  tc_load_tile<T, D>(k_tile, k, b, k0, d.seq_len, d.kv_heads, kvh);
  tc_load_tile<T, D>(v_tile, v, b, k0, d.seq_len, d.kv_heads, kvh);
  FragAcc dk_acc[D / kFrag], dv_acc[D / kFrag];
#pragma unroll
  for (int n = 0; n < D / kFrag; n++) {
    wmma::fill_fragment(dk_acc[n], 0.0f);
    wmma::fill_fragment(dv_acc[n], 0.0f);
  }

  // Keys at or past the row's length are masked for every query: their gradients stay 0.
  const int q_start = d.causal ? k0 : 0;  // queries before k0 see none of these keys
  for (int g = 0; k0 < length && g < group; g++) {
    const int h = kvh * group + g;
    for (int qs = q_start; qs < d.seq_len; qs += kTcTile) {
      __syncthreads();  // the previous query tile is consumed (and k, v are loaded)
      tc_load_tile<T, D>(q_tile, q, b, qs, d.seq_len, d.heads, h);
      tc_load_tile<T, D>(do_tile, d_out, b, qs, d.seq_len, d.heads, h);
      if (threadIdx.x < kTcTile) {
        const int s = qs + threadIdx.x;
        const size_t row = (static_cast<size_t>(b) * d.heads + h) * d.seq_len + s;
        lse_tile[threadIdx.x] = s < d.seq_len ? lse[row] : 0.0f;
        d_tile[threadIdx.x] = s < d.seq_len ? d_rows[row] : 0.0f;
      }
      __syncthreads();
      tc_rows_times_tile_t<T, D>(st_rows, k_tile + key0 * ld16(D), q_tile);
      tc_rows_times_tile_t<T, D>(dpt_rows, v_tile + key0 * ld16(D), do_tile);
      __syncwarp();
      tc_probs_and_d_scores<T>(
          st_rows, dpt_rows, true, d, length, [&](int, int c) { return qs + c; }, [&](int r, int) { return k0 + key0 + r; },
          [&](int, int c) { return lse_tile[c]; }, [&](int, int c) { return d_tile[c]; });
      tc_rows_times_tile<T, D>(dv_acc, reinterpret_cast<const T*>(st_rows), do_tile);
      tc_rows_times_tile<T, D>(dk_acc, reinterpret_cast<const T*>(dpt_rows), q_tile);
    }
  }
  __syncthreads();  // q, dOut are consumed: their memory stages the results
  float* staging = reinterpret_cast<float*>(q_tile) + key0 * (D + 4);
  tc_store_rows<T, D>(dk_acc, staging, dk, d, b, k0 + key0, d.kv_heads, kvh);
  tc_store_rows<T, D>(dv_acc, staging, dv, d, b, k0 + key0, d.kv_heads, kvh);
}

}  // namespace

namespace {

template <typename T, int D>
void launch_forward_tc(const void* q, const void* k, const void* v, void* out, float* lse, const ref::AttentionDims& dims,
                          cudaStream_t stream) {
  auto kernel = attention_forward_tc_kernel<T, D>;
  allow_shared(kernel, tc_forward_bytes(D));
  kernel<<<tc_grid(dims, dims.heads), kTcThreads, tc_forward_bytes(D), stream>>>(
      static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v), static_cast<T*>(out), lse, dims);
  LAUNCH_CHECK();
}

template <typename T, int D>
void launch_backward_tc(const void* q, const void* k, const void* v, const void* d_out, const float* lse,
                           const float* d_rows, void* dq, void* dk, void* dv, const ref::AttentionDims& dims,
                           cudaStream_t stream) {
  const T *tq = static_cast<const T*>(q), *tk = static_cast<const T*>(k), *tv = static_cast<const T*>(v);
  const T* t_do = static_cast<const T*>(d_out);
  auto dq_kernel = attention_dq_tc_kernel<T, D>;
  allow_shared(dq_kernel, tc_dq_bytes(D));
  dq_kernel<<<tc_grid(dims, dims.heads), kTcThreads, tc_dq_bytes(D), stream>>>(tq, tk, tv, t_do, lse, d_rows,
                                                                                static_cast<T*>(dq), dims);
  LAUNCH_CHECK();
  auto dkv_kernel = attention_dkv_tc_kernel<T, D>;
  allow_shared(dkv_kernel, tc_dkv_bytes(D));
  dkv_kernel<<<tc_grid(dims, dims.kv_heads), kTcThreads, tc_dkv_bytes(D), stream>>>(
      tq, tk, tv, t_do, lse, d_rows, static_cast<T*>(dk), static_cast<T*>(dv), dims);
  LAUNCH_CHECK();
}


}  // namespace

void attention_forward_tc(const void* q, const void* k, const void* v, void* out, float* lse, DType dtype,
                          const ref::AttentionDims& dims, cudaStream_t stream) {
  const bool bf16 = dtype == DType::BF16;
  if (dims.head_dim == 64) {
    (bf16 ? launch_forward_tc<__nv_bfloat16, 64> : launch_forward_tc<__half, 64>)(q, k, v, out, lse, dims, stream);
  } else {
    (bf16 ? launch_forward_tc<__nv_bfloat16, 128> : launch_forward_tc<__half, 128>)(q, k, v, out, lse, dims, stream);
  }
}

void attention_backward_tc(const void* q, const void* k, const void* v, const void* d_out, const float* lse,
                           const float* d_rows, void* dq, void* dk, void* dv, DType dtype,
                           const ref::AttentionDims& dims, cudaStream_t stream) {
  const bool bf16 = dtype == DType::BF16;
  if (dims.head_dim == 64) {
    (bf16 ? launch_backward_tc<__nv_bfloat16, 64> : launch_backward_tc<__half, 64>)(q, k, v, d_out, lse, d_rows, dq, dk, dv,
                                                                                     dims, stream);
  } else {
    (bf16 ? launch_backward_tc<__nv_bfloat16, 128> : launch_backward_tc<__half, 128>)(q, k, v, d_out, lse, d_rows, dq, dk,
                                                                                       dv, dims, stream);
  }
}

}  // namespace badam::cuda_llama
