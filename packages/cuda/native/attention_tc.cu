// The tensor-core (WMMA) attention kernels: bf16 / fp16 at head dim 64 or 128 (attention.cu picks them where
// they apply and where the device's shared memory holds their tiles). The per-element math is llama_math.h's,
// shared with the CPU reference and the SIMT kernels.
//
// FlashAttention-2's structure with the WMMA API (16x16x16 bf16 / fp16 fragments, fp32 accumulators, sm_80+):
// a CTA of 4 warps owns 64 rows (a warp 16) and walks the tiles of KT rows of the other side, every product on
// tensor cores, every softmax statistic in fp32 from shared memory (the fragment layout is never assumed: row
// statistics read the scores back from shared memory, the portable WMMA way). Same semantics as the SIMT
// kernels (GQA, causal, padding lengths, empty rows give 0, lse [batch, heads, seq_len]), and the same
// llama_math.h formulas; only the operands of the products are 16-bit (P and dS rounded to T as FlashAttention
// does), the sums are fp32.
//
// The walked tile KT is 64 or 32 rows, chosen at run time from the device's opt-in shared memory per block
// (attention_tc_key_tile): 64 where every kernel fits (A100, H100 / H200: 163 / 227 KiB), 32 on the 99 KiB of
// sm_86 / sm_89 cards (RTX 3090 / 4090, A10, L4, L40S). Shared memory per CTA, ld16 = D + 8 (16-bit tiles),
// KT + 4 and D + 4 (fp32 rows); the pads move each row by 16 bytes against bank conflicts and keep every
// fragment pointer 32-byte aligned:
//
//                  forward: q [64], k, v [KT] T    dq: q, dO [64], k, v [KT] T    dk / dv: k, v [64], q, dO [KT] T
//                  + s [64][KT+4], o [64][D+4] f32  + s, dp [64][KT+4] f32 + lse, D  + s^T, dp^T [64][KT+4] f32 + lse, D
//   D 128, KT 64:  103,424                          104,960                         104,960
//   D 128, KT 32:   77,824                           71,168                          70,912
//   D  64, KT 64:   62,464                           72,192                          72,192
//   D  64, KT 32:   45,056                           46,592                          46,336
//
// These kernels have no static __shared__ variables, so their dynamic shared memory starts at the base of the
// CTA's window (aligned far beyond 32 bytes), and every offset above is a multiple of 32 bytes. P (or P^T, dS,
// dS^T) is written as T over the fp32 rows it comes from, so it costs no memory. Registers (ptxas -v, CUDA
// 13): up to 255 a thread, no spills; 2 CTAs of 128 threads share an SM's 64K registers, so shared memory sets
// the occupancy.
//
// dk / dv of one kv head sum over the query heads of its GQA group. With few (batch, kv head, key tile) CTAs
// the group is split over `splits` CTAs (attention_dkv_splits, llama_reference.h), each writing an fp32 partial
// sum into a workspace that a second kernel adds in order: deterministic, no atomics.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <cstdint>
#include <stdexcept>
#include <type_traits>

#include "attention_common.cuh"
#include "kernel_common.cuh"
#include "llama_math.h"

namespace badam::cuda_llama {
namespace {

namespace wmma = nvcuda::wmma;

constexpr int kTcRows = 64;  // rows a CTA owns
constexpr int kTcWarps = 4;  // a warp owns 16 of them
constexpr int kTcThreads = kTcWarps * 32;
constexpr int kFrag = 16;    // WMMA m = n = k

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
template <>
__device__ __forceinline__ float from_f32<float>(float x) { return x; }

/** Row stride of a 16-bit [rows][D] tile. */
__host__ __device__ constexpr int ld16(int head_dim) { return head_dim + 8; }
/** Row stride of an fp32 [rows][KT] score tile, and of the same rows read as T (P written over them). */
__host__ __device__ constexpr int lds(int key_tile) { return key_tile + 4; }
__host__ __device__ constexpr int ldp(int key_tile) { return 2 * lds(key_tile); }

/** Bytes of shared memory of each kernel at head dim D and walked tile KT (the table above). */
constexpr size_t tc_forward_bytes(int D, int KT) {
  return (kTcRows + 2 * KT) * ld16(D) * 2 + kTcRows * lds(KT) * 4 + kTcRows * (D + 4) * 4;
}
constexpr size_t tc_dq_bytes(int D, int KT) {
  return (2 * kTcRows + 2 * KT) * ld16(D) * 2 + 2 * kTcRows * lds(KT) * 4 + 2 * kTcRows * 4;
}
constexpr size_t tc_dkv_bytes(int D, int KT) {
  return (2 * kTcRows + 2 * KT) * ld16(D) * 2 + 2 * kTcRows * lds(KT) * 4 + 2 * KT * 4;
}
static_assert(tc_forward_bytes(128, 64) == 103424 && tc_dq_bytes(128, 64) == 104960 && tc_dkv_bytes(128, 64) == 104960,
              "the shared memory table above");
static_assert(tc_forward_bytes(128, 32) == 77824 && tc_dq_bytes(128, 32) == 71168 && tc_dkv_bytes(128, 32) == 70912,
              "the shared memory table above");
static_assert(tc_forward_bytes(64, 32) == 45056 && tc_dq_bytes(64, 32) == 46592 && tc_dkv_bytes(64, 32) == 46336,
              "the shared memory table above");

/** The largest of the three kernels' shared memory: what the device must allow a block. */
constexpr size_t tc_max_bytes(int D, int KT) {
  const size_t f = tc_forward_bytes(D, KT), q = tc_dq_bytes(D, KT), kv = tc_dkv_bytes(D, KT);
  return f > q ? (f > kv ? f : kv) : (q > kv ? q : kv);
}

/**
 * tile[r][i] (ld16(D)) = head `head` of token (b, s0 + r) for r < ROWS, from rows of `stride` elements, 16
 * bytes at a time; 0 past the sequence.
 */
template <typename T, int D, int ROWS>
__device__ void tc_load_tile(T* tile, const T* src, int b, int s0, int seq_len, size_t stride, int head) {
  constexpr int kChunks = D / 8;  // 8 elements = 16 bytes
  for (int e = threadIdx.x; e < ROWS * kChunks; e += blockDim.x) {
    const int r = e / kChunks, c = (e % kChunks) * 8, s = s0 + r;
    uint4 chunk = make_uint4(0, 0, 0, 0);
    if (s < seq_len) {
      chunk = *reinterpret_cast<const uint4*>(src + (static_cast<size_t>(b) * seq_len + s) * stride +
                                              static_cast<size_t>(head) * D + c);
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

/** out[16][KT] (fp32, ld lds(KT)) = a b[KT][D]^T, a the 16 rows held as fragments (tc_load_rows). */
template <typename T, int D, int KT>
__device__ __forceinline__ void tc_frags_times_tile_t(float* out, const FragA<T>* a, const T* b) {
#pragma unroll 1  // one column block at a time, as below
  for (int n = 0; n < KT / kFrag; n++) {
    FragAcc acc;
    wmma::fill_fragment(acc, 0.0f);
#pragma unroll
    for (int kk = 0; kk < D / kFrag; kk++) {
      FragBCol<T> fb;  // b's rows as columns: element (k, n) at b[n * ld + k]
      wmma::load_matrix_sync(fb, b + n * kFrag * ld16(D) + kk * kFrag, ld16(D));
      wmma::mma_sync(acc, a[kk], fb, acc);
    }
    wmma::store_matrix_sync(out + n * kFrag, acc, lds(KT), wmma::mem_row_major);
  }
}

/** out[16][KT] (fp32, ld lds(KT)) = a[16][D] b[KT][D]^T: 16 rows of a against the KT rows of b (both T, ld16). */
template <typename T, int D, int KT>
__device__ __forceinline__ void tc_rows_times_tile_t(float* out, const T* a, const T* b) {
#pragma unroll 1  // one column block at a time: unrolled, the dk / dv kernel spills at D 128 on sm_80 (ptxas -v)
  for (int n = 0; n < KT / kFrag; n++) {
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
    wmma::store_matrix_sync(out + n * kFrag, acc, lds(KT), wmma::mem_row_major);
  }
}

/** acc[n] += p[16][KT] (T, ld ldp(KT)) b[KT][D] (T, ld16) for the D / 16 column blocks n of the result. */
template <typename T, int D, int KT>
__device__ __forceinline__ void tc_rows_times_tile(FragAcc* acc, const T* p, const T* b) {
#pragma unroll
  for (int kk = 0; kk < KT / kFrag; kk++) {
    FragA<T> fa;
    wmma::load_matrix_sync(fa, p + kk * kFrag, ldp(KT));
#pragma unroll
    for (int n = 0; n < D / kFrag; n++) {
      FragBRow<T> fb;
      wmma::load_matrix_sync(fb, b + kk * kFrag * ld16(D) + n * kFrag, ld16(D));
      wmma::mma_sync(acc[n], fa, fb, acc[n]);
    }
  }
}

/**
 * Writes 16 rows of accumulators through `staging` (fp32, ld D + 4, the warp's own) as OutT rows of dst:
 * head `head` of tokens (b, s0 + r), rows of `stride` elements.
 */
template <typename OutT, int D>
__device__ void tc_store_rows(const FragAcc* acc, float* staging, OutT* dst, const ref::AttentionDims& d, int b, int s0,
                              size_t stride, int head) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int n = 0; n < D / kFrag; n++) wmma::store_matrix_sync(staging + n * kFrag, acc[n], D + 4, wmma::mem_row_major);
  __syncwarp();
  for (int e = lane; e < kFrag * D; e += 32) {
    const int r = e / D, i = e % D, s = s0 + r;
    if (s < d.seq_len) {
      dst[(static_cast<size_t>(b) * d.seq_len + s) * stride + static_cast<size_t>(head) * D + i] =
          from_f32<OutT>(staging[r * (D + 4) + i]);
    }
  }
  __syncwarp();  // staging is read before it is written again
}

dim3 tc_grid(const ref::AttentionDims& d, int heads) {
  return dim3(static_cast<unsigned>((d.seq_len + kTcRows - 1) / kTcRows), static_cast<unsigned>(heads),
              static_cast<unsigned>(d.batch));
}

/** Keys [0, end) that some query of the 64-row tile at q0 can see. */
__device__ __forceinline__ int tc_key_end(const ref::AttentionDims& d, int q0, int length) {
  return d.causal ? min(length, min(q0 + kTcRows, d.seq_len)) : length;
}

// q [N, q_stride], k, v [N, kv_stride], out [N, heads * D], lse [batch, heads, seq_len]; T = __nv_bfloat16 or
// __half. grid (ceil(seq_len / 64), heads, batch), 128 threads (4 warps, 16 query rows each),
// tc_forward_bytes(D, KT). Per key tile: S = Q K^T (tensor cores, fp32 in shared), the online softmax of each
// row in fp32 (a lane owns keys lane + 32 c of the warp's 16 rows), P as T over S, O rescaled in shared,
// O += P V (tensor cores).
template <typename T, int D, int KT>
__global__ void __launch_bounds__(kTcThreads) attention_forward_tc_kernel(const T* q, const T* k, const T* v, T* out,
                                                                          float* lse, ref::AttentionDims d) {
  extern __shared__ float smem[];
  constexpr int kLdo = D + 4;
  constexpr int kKeysPerLane = KT / 32;
  T* q_tile = reinterpret_cast<T*>(smem);
  T* k_tile = q_tile + kTcRows * ld16(D);
  T* v_tile = k_tile + KT * ld16(D);
  float* s_tile = reinterpret_cast<float*>(v_tile + KT * ld16(D));
  float* o_tile = s_tile + kTcRows * lds(KT);
  const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * kTcRows;
  const int kvh = h / (d.heads / d.kv_heads);
  const int length = llama::row_length(d.lengths, b, d.seq_len);
  const size_t q_stride = ref::q_stride_of(d), kv_stride = ref::kv_stride_of(d);
  const size_t out_stride = static_cast<size_t>(d.heads) * D;
  const int lane = threadIdx.x & 31, row0 = (threadIdx.x >> 5) * kFrag;
  float* s_rows = s_tile + row0 * lds(KT);  // the warp's 16 x KT scores
  T* p_rows = reinterpret_cast<T*>(s_rows);  // ... and its probabilities over them (ld ldp(KT))
  float* o_rows = o_tile + row0 * kLdo;      // the warp's 16 x D output accumulator

  tc_load_tile<T, D, kTcRows>(q_tile, q, b, q0, d.seq_len, q_stride, h);
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
  for (int k0 = 0; k0 < key_end; k0 += KT) {
    __syncthreads();  // the previous k, v tiles are consumed
    tc_load_tile<T, D, KT>(k_tile, k, b, k0, d.seq_len, kv_stride, kvh);
    tc_load_tile<T, D, KT>(v_tile, v, b, k0, d.seq_len, kv_stride, kvh);
    __syncthreads();
    tc_frags_times_tile_t<T, D, KT>(s_rows, q_frags, k_tile);
    __syncwarp();
    float p[kFrag][kKeysPerLane], rescale[kFrag];
#pragma unroll
    for (int r = 0; r < kFrag; r++) {
      const int s = q0 + row0 + r;
      float sc[kKeysPerLane], row_max = -INFINITY;
#pragma unroll
      for (int c = 0; c < kKeysPerLane; c++) {
        const int key = k0 + lane + 32 * c;
        const bool visible = s < d.seq_len && llama::key_visible(key, s, length, d.causal);
        sc[c] = visible ? s_rows[r * lds(KT) + lane + 32 * c] * d.scale : -INFINITY;
        row_max = fmaxf(row_max, sc[c]);
      }
      const float m_new = fmaxf(m[r], warp_max(row_max));
      rescale[r] = 1.0f;
#pragma unroll
      for (int c = 0; c < kKeysPerLane; c++) p[r][c] = 0.0f;
      if (m_new == -INFINITY) continue;  // nothing visible to this row yet (uniform across the warp)
      rescale[r] = llama::softmax_rescale(m[r], m_new);
      float row_sum = 0.0f;
#pragma unroll
      for (int c = 0; c < kKeysPerLane; c++) {
        p[r][c] = llama::attention_prob(sc[c], m_new);  // exp(-inf) = 0 for masked keys
        row_sum += p[r][c];
      }
      l[r] = l[r] * rescale[r] + warp_sum(row_sum);
      m[r] = m_new;
    }
    __syncwarp();  // every lane has read its scores before P is written over them
#pragma unroll
    for (int r = 0; r < kFrag; r++) {
#pragma unroll
      for (int c = 0; c < kKeysPerLane; c++) p_rows[r * ldp(KT) + lane + 32 * c] = from_f32<T>(p[r][c]);
      if (rescale[r] != 1.0f) {  // the same in every lane: the row's max moved
        for (int i = lane; i < D; i += 32) o_rows[r * kLdo + i] *= rescale[r];
      }
    }
    __syncwarp();
    FragAcc acc[D / kFrag];
#pragma unroll
    for (int n = 0; n < D / kFrag; n++) wmma::load_matrix_sync(acc[n], o_rows + n * kFrag, kLdo, wmma::mem_row_major);
    tc_rows_times_tile<T, D, KT>(acc, p_rows, v_tile);
#pragma unroll
    for (int n = 0; n < D / kFrag; n++) wmma::store_matrix_sync(o_rows + n * kFrag, acc[n], kLdo, wmma::mem_row_major);
    __syncwarp();
  }

#pragma unroll
  for (int r = 0; r < kFrag; r++) {
    const int s = q0 + row0 + r;
    if (s >= d.seq_len) continue;
    for (int i = lane; i < D; i += 32) {
      out[ref::head_index(d, out_stride, b, s, h, i)] = from_f32<T>(llama::attention_output(o_rows[r * kLdo + i], l[r]));
    }
    if (lane == 0) lse[(static_cast<size_t>(b) * d.heads + h) * d.seq_len + s] = llama::softmax_lse(m[r], l[r]);
  }
}

/**
 * dS (or dS^T) of a warp's 16 rows, written as T over the fp32 dP rows, and P as T over the score rows when
 * `p_out`: from scores and dP (fp32, ld lds(KT)) of the rows; `query_of(r, c)` / `key_of(r, c)` say which
 * query and key element (r, c) is, `row_lse(r, c)` / `row_d(r, c)` its query's lse and D. KT / 16 passes of
 * 16 columns (a lane owns column lane % 16 of 8 rows), so a lane holds 16 values, not KT, beside the dk / dv
 * kernel's accumulators: a pass's T values cover the bytes of fp32 columns read before, never later ones.
 */
template <typename T, int KT, typename Query, typename Key, typename Lse, typename DRow>
__device__ __forceinline__ void tc_probs_and_d_scores(float* s_rows, float* dp_rows, bool p_out, const ref::AttentionDims& d,
                                                      int length, Query query_of, Key key_of, Lse row_lse, DRow row_d) {
  const int lane = threadIdx.x & 31;
  constexpr int kRowsPerLane = kFrag / 2;
#pragma unroll
  for (int pass = 0; pass < KT / 16; pass++) {
    const int c = pass * 16 + (lane & 15), r0 = lane >> 4;  // rows r0, r0 + 2, ..., r0 + 14
    float p[kRowsPerLane], ds[kRowsPerLane];
#pragma unroll
    for (int i = 0; i < kRowsPerLane; i++) {
      const int r = r0 + 2 * i, s = query_of(r, c);
      const bool visible = s < d.seq_len && llama::key_visible(key_of(r, c), s, length, d.causal);
      p[i] = visible ? llama::attention_prob(s_rows[r * lds(KT) + c] * d.scale, row_lse(r, c)) : 0.0f;
      ds[i] = visible ? llama::attention_d_score(p[i], dp_rows[r * lds(KT) + c], row_d(r, c), d.scale) : 0.0f;
    }
    __syncwarp();  // the pass's fp32 values are read by every lane before T values go over them
#pragma unroll
    for (int i = 0; i < kRowsPerLane; i++) {
      const int r = r0 + 2 * i;
      reinterpret_cast<T*>(dp_rows)[r * ldp(KT) + c] = from_f32<T>(ds[i]);
      if (p_out) reinterpret_cast<T*>(s_rows)[r * ldp(KT) + c] = from_f32<T>(p[i]);
    }
    __syncwarp();
  }
}

/** lse and D of the ROWS query rows of head h from s0 into shared memory (0 past the sequence). */
template <int ROWS>
__device__ __forceinline__ void tc_load_row_stats(float* lse_tile, float* d_tile, const float* lse, const float* d_rows,
                                                  const ref::AttentionDims& d, int b, int h, int s0) {
  if (threadIdx.x < ROWS) {
    const int s = s0 + threadIdx.x;
    const size_t row = (static_cast<size_t>(b) * d.heads + h) * d.seq_len + s;
    lse_tile[threadIdx.x] = s < d.seq_len ? lse[row] : 0.0f;
    d_tile[threadIdx.x] = s < d.seq_len ? d_rows[row] : 0.0f;
  }
}

// dq [N, q_stride] = dS K over the visible keys, dS = P (dP - D) scale, P = exp(S scale - lse), dP = dOut V^T.
// grid (ceil(seq_len / 64), heads, batch), 128 threads (a warp owns 16 query rows), tc_dq_bytes(D, KT).
// No atomics: a CTA owns its rows; dq accumulates in fragments over the key tiles.
template <typename T, int D, int KT>
__global__ void __launch_bounds__(kTcThreads) attention_dq_tc_kernel(const T* q, const T* k, const T* v, const T* d_out,
                                                                     const float* lse, const float* d_rows, T* dq,
                                                                     ref::AttentionDims d) {
  extern __shared__ float smem[];
  T* q_tile = reinterpret_cast<T*>(smem);
  T* do_tile = q_tile + kTcRows * ld16(D);
  T* k_tile = do_tile + kTcRows * ld16(D);
  T* v_tile = k_tile + KT * ld16(D);
  float* s_tile = reinterpret_cast<float*>(v_tile + KT * ld16(D));
  float* dp_tile = s_tile + kTcRows * lds(KT);
  float* lse_tile = dp_tile + kTcRows * lds(KT);  // lse and D of the 64 rows: shared, as a lane reads several rows
  float* d_tile = lse_tile + kTcRows;
  const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * kTcRows;
  const int kvh = h / (d.heads / d.kv_heads);
  const int length = llama::row_length(d.lengths, b, d.seq_len);
  const size_t q_stride = ref::q_stride_of(d), kv_stride = ref::kv_stride_of(d);
  const int row0 = (threadIdx.x >> 5) * kFrag;
  float* s_rows = s_tile + row0 * lds(KT);
  float* dp_rows = dp_tile + row0 * lds(KT);

  tc_load_tile<T, D, kTcRows>(q_tile, q, b, q0, d.seq_len, q_stride, h);
  tc_load_tile<T, D, kTcRows>(do_tile, d_out, b, q0, d.seq_len, static_cast<size_t>(d.heads) * D, h);
  tc_load_row_stats<kTcRows>(lse_tile, d_tile, lse, d_rows, d, b, h, q0);
  FragAcc acc[D / kFrag];
#pragma unroll
  for (int n = 0; n < D / kFrag; n++) wmma::fill_fragment(acc[n], 0.0f);

  const int key_end = tc_key_end(d, q0, length);
  for (int k0 = 0; k0 < key_end; k0 += KT) {
    __syncthreads();
    tc_load_tile<T, D, KT>(k_tile, k, b, k0, d.seq_len, kv_stride, kvh);
    tc_load_tile<T, D, KT>(v_tile, v, b, k0, d.seq_len, kv_stride, kvh);
    __syncthreads();
    tc_rows_times_tile_t<T, D, KT>(s_rows, q_tile + row0 * ld16(D), k_tile);
    tc_rows_times_tile_t<T, D, KT>(dp_rows, do_tile + row0 * ld16(D), v_tile);
    __syncwarp();
    tc_probs_and_d_scores<T, KT>(
        s_rows, dp_rows, false, d, length, [&](int r, int) { return q0 + row0 + r; }, [&](int, int c) { return k0 + c; },
        [&](int r, int) { return lse_tile[row0 + r]; }, [&](int r, int) { return d_tile[row0 + r]; });
    tc_rows_times_tile<T, D, KT>(acc, reinterpret_cast<const T*>(dp_rows), k_tile);
  }
  __syncthreads();  // q, dOut are consumed: their memory stages the result
  tc_store_rows<T, D>(acc, reinterpret_cast<float*>(q_tile) + row0 * (D + 4), dq, d, b, q0 + row0, q_stride, h);
}

// dk = dS^T Q and dv = P^T dOut for 64 keys of one kv head, summed over the query heads [g0, g1) of its group
// and every query tile (KT rows) that sees the keys. grid (ceil(seq_len / 64), kv_heads * splits, batch), 128
// threads (a warp owns 16 keys), tc_dkv_bytes(D, KT). With one split, dk and dv [N, kv_stride] are written as
// T; with several, split sp writes its fp32 partial sums into `partials` [splits][2][N][kv_heads * D] (dk then
// dv), which attention_dkv_sum_kernel adds. Deterministic, no atomics: dk, dv accumulate in fragments.
template <typename T, int D, int KT>
__global__ void __launch_bounds__(kTcThreads) attention_dkv_tc_kernel(const T* q, const T* k, const T* v, const T* d_out,
                                                                      const float* lse, const float* d_rows, T* dk, T* dv,
                                                                      float* partials, int splits, ref::AttentionDims d) {
  extern __shared__ float smem[];
  T* k_tile = reinterpret_cast<T*>(smem);
  T* v_tile = k_tile + kTcRows * ld16(D);
  T* q_tile = v_tile + kTcRows * ld16(D);
  T* do_tile = q_tile + KT * ld16(D);
  float* st_tile = reinterpret_cast<float*>(do_tile + KT * ld16(D));  // S^T: [key][query]
  float* dpt_tile = st_tile + kTcRows * lds(KT);                      // dP^T
  float* lse_tile = dpt_tile + kTcRows * lds(KT);
  float* d_tile = lse_tile + KT;
  const int b = blockIdx.z, kvh = blockIdx.y / splits, split = blockIdx.y % splits, k0 = blockIdx.x * kTcRows;
  const int group = d.heads / d.kv_heads, per_split = group / splits;
  const int length = llama::row_length(d.lengths, b, d.seq_len);
  const size_t q_stride = ref::q_stride_of(d), kv_stride = ref::kv_stride_of(d);
  const size_t out_stride = static_cast<size_t>(d.heads) * D;
  const int key0 = (threadIdx.x >> 5) * kFrag;
  float* st_rows = st_tile + key0 * lds(KT);
  float* dpt_rows = dpt_tile + key0 * lds(KT);

  tc_load_tile<T, D, kTcRows>(k_tile, k, b, k0, d.seq_len, kv_stride, kvh);
  tc_load_tile<T, D, kTcRows>(v_tile, v, b, k0, d.seq_len, kv_stride, kvh);
  FragAcc dk_acc[D / kFrag], dv_acc[D / kFrag];
#pragma unroll
  for (int n = 0; n < D / kFrag; n++) {
    wmma::fill_fragment(dk_acc[n], 0.0f);
    wmma::fill_fragment(dv_acc[n], 0.0f);
  }

  // Keys at or past the row's length are masked for every query: their gradients stay 0.
  const int q_start = d.causal ? k0 : 0;  // queries before k0 see none of these keys
  for (int g = split * per_split; k0 < length && g < (split + 1) * per_split; g++) {
    const int h = kvh * group + g;
    for (int qs = q_start; qs < d.seq_len; qs += KT) {
      __syncthreads();  // the previous query tile is consumed (and k, v are loaded)
      tc_load_tile<T, D, KT>(q_tile, q, b, qs, d.seq_len, q_stride, h);
      tc_load_tile<T, D, KT>(do_tile, d_out, b, qs, d.seq_len, out_stride, h);
      tc_load_row_stats<KT>(lse_tile, d_tile, lse, d_rows, d, b, h, qs);
      __syncthreads();
      tc_rows_times_tile_t<T, D, KT>(st_rows, k_tile + key0 * ld16(D), q_tile);
      tc_rows_times_tile_t<T, D, KT>(dpt_rows, v_tile + key0 * ld16(D), do_tile);
      __syncwarp();
      tc_probs_and_d_scores<T, KT>(
          st_rows, dpt_rows, true, d, length, [&](int, int c) { return qs + c; }, [&](int r, int) { return k0 + key0 + r; },
          [&](int, int c) { return lse_tile[c]; }, [&](int, int c) { return d_tile[c]; });
      tc_rows_times_tile<T, D, KT>(dv_acc, reinterpret_cast<const T*>(st_rows), do_tile);
      tc_rows_times_tile<T, D, KT>(dk_acc, reinterpret_cast<const T*>(dpt_rows), q_tile);
    }
  }
  __syncthreads();  // k, v are consumed: their memory stages the results
  float* staging = reinterpret_cast<float*>(k_tile) + key0 * (D + 4);
  if (splits == 1) {
    tc_store_rows<T, D>(dk_acc, staging, dk, d, b, k0 + key0, kv_stride, kvh);
    tc_store_rows<T, D>(dv_acc, staging, dv, d, b, k0 + key0, kv_stride, kvh);
  } else {
    const size_t part = static_cast<size_t>(d.batch) * d.seq_len * d.kv_heads * D;  // one [N, kv_heads * D] sum
    const size_t packed = static_cast<size_t>(d.kv_heads) * D;
    tc_store_rows<float, D>(dk_acc, staging, partials + (2 * split) * part, d, b, k0 + key0, packed, kvh);
    tc_store_rows<float, D>(dv_acc, staging, partials + (2 * split + 1) * part, d, b, k0 + key0, packed, kvh);
  }
}

// dk, dv [N, kv_stride] = the sums, in split order, of the partials [splits][2][N][kv_heads * D]; a thread per
// element.
template <typename T>
__global__ void attention_dkv_sum_kernel(const float* partials, int splits, T* dk, T* dv, ref::AttentionDims d) {
  const size_t packed = static_cast<size_t>(d.kv_heads) * d.head_dim;
  const size_t part = static_cast<size_t>(d.batch) * d.seq_len * packed;
  const size_t kv_stride = ref::kv_stride_of(d);
  GRID_STRIDE(i, part) {
    float sk = 0.0f, sv = 0.0f;
    for (int s = 0; s < splits; s++) {
      sk += partials[(2 * s) * part + i];
      sv += partials[(2 * s + 1) * part + i];
    }
    const size_t at = (i / packed) * kv_stride + i % packed;
    dk[at] = from_f32<T>(sk);
    dv[at] = from_f32<T>(sv);
  }
}

template <typename T, int D, int KT>
void launch_forward_tc(const void* q, const void* k, const void* v, void* out, float* lse, const ref::AttentionDims& dims,
                       cudaStream_t stream) {
  auto kernel = attention_forward_tc_kernel<T, D, KT>;
  allow_shared(kernel, tc_forward_bytes(D, KT));
  kernel<<<tc_grid(dims, dims.heads), kTcThreads, tc_forward_bytes(D, KT), stream>>>(
      static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v), static_cast<T*>(out), lse, dims);
  LAUNCH_CHECK();
}

template <typename T, int D, int KT>
void launch_backward_tc(const void* q, const void* k, const void* v, const void* d_out, const float* lse,
                        const float* d_rows, void* dq, void* dk, void* dv, float* partials, const ref::AttentionDims& dims,
                        cudaStream_t stream) {
  const T *tq = static_cast<const T*>(q), *tk = static_cast<const T*>(k), *tv = static_cast<const T*>(v);
  const T* t_do = static_cast<const T*>(d_out);
  auto dq_kernel = attention_dq_tc_kernel<T, D, KT>;
  allow_shared(dq_kernel, tc_dq_bytes(D, KT));
  dq_kernel<<<tc_grid(dims, dims.heads), kTcThreads, tc_dq_bytes(D, KT), stream>>>(tq, tk, tv, t_do, lse, d_rows,
                                                                                    static_cast<T*>(dq), dims);
  LAUNCH_CHECK();
  const int splits = ref::attention_dkv_splits(dims);
  if (splits > 1 && partials == nullptr) {
    throw std::invalid_argument("attention backward: the dk / dv split over the GQA group needs its fp32 workspace");
  }
  auto dkv_kernel = attention_dkv_tc_kernel<T, D, KT>;
  allow_shared(dkv_kernel, tc_dkv_bytes(D, KT));
  dkv_kernel<<<tc_grid(dims, dims.kv_heads * splits), kTcThreads, tc_dkv_bytes(D, KT), stream>>>(
      tq, tk, tv, t_do, lse, d_rows, static_cast<T*>(dk), static_cast<T*>(dv), partials, splits, dims);
  LAUNCH_CHECK();
  if (splits > 1) {
    const size_t part = static_cast<size_t>(dims.batch) * dims.seq_len * dims.kv_heads * D;
    attention_dkv_sum_kernel<T><<<blocks_for(part), kThreads, 0, stream>>>(partials, splits, static_cast<T*>(dk),
                                                                           static_cast<T*>(dv), dims);
    LAUNCH_CHECK();
  }
}

/** The launcher of (T, D, KT): every combination the dispatcher may pick. */
template <typename Launch>
void dispatch_tc(DType dtype, int head_dim, int key_tile, Launch&& launch) {
  const bool bf16 = dtype == DType::BF16;
  if (head_dim == 64) {
    if (key_tile == 64) {
      bf16 ? launch(static_cast<__nv_bfloat16*>(nullptr), std::integral_constant<int, 64>{}, std::integral_constant<int, 64>{})
           : launch(static_cast<__half*>(nullptr), std::integral_constant<int, 64>{}, std::integral_constant<int, 64>{});
    } else {
      bf16 ? launch(static_cast<__nv_bfloat16*>(nullptr), std::integral_constant<int, 64>{}, std::integral_constant<int, 32>{})
           : launch(static_cast<__half*>(nullptr), std::integral_constant<int, 64>{}, std::integral_constant<int, 32>{});
    }
  } else if (key_tile == 64) {
    bf16 ? launch(static_cast<__nv_bfloat16*>(nullptr), std::integral_constant<int, 128>{}, std::integral_constant<int, 64>{})
         : launch(static_cast<__half*>(nullptr), std::integral_constant<int, 128>{}, std::integral_constant<int, 64>{});
  } else {
    bf16 ? launch(static_cast<__nv_bfloat16*>(nullptr), std::integral_constant<int, 128>{}, std::integral_constant<int, 32>{})
         : launch(static_cast<__half*>(nullptr), std::integral_constant<int, 128>{}, std::integral_constant<int, 32>{});
  }
}

}  // namespace

int attention_tc_key_tile(int head_dim, size_t shared_limit) {
  if (head_dim != 64 && head_dim != 128) return 0;
  for (const int key_tile : {64, 32}) {
    if (tc_max_bytes(head_dim, key_tile) <= shared_limit) return key_tile;
  }
  return 0;
}

void attention_forward_tc(const void* q, const void* k, const void* v, void* out, float* lse, DType dtype, int key_tile,
                          const ref::AttentionDims& dims, cudaStream_t stream) {
  dispatch_tc(dtype, dims.head_dim, key_tile, [&](auto* type, auto head_dim, auto tile) {
    using T = std::remove_pointer_t<decltype(type)>;
    launch_forward_tc<T, decltype(head_dim)::value, decltype(tile)::value>(q, k, v, out, lse, dims, stream);
  });
}

void attention_backward_tc(const void* q, const void* k, const void* v, const void* d_out, const float* lse,
                           const float* d_rows, void* dq, void* dk, void* dv, float* partials, DType dtype, int key_tile,
                           const ref::AttentionDims& dims, cudaStream_t stream) {
  dispatch_tc(dtype, dims.head_dim, key_tile, [&](auto* type, auto head_dim, auto tile) {
    using T = std::remove_pointer_t<decltype(type)>;
    launch_backward_tc<T, decltype(head_dim)::value, decltype(tile)::value>(q, k, v, d_out, lse, d_rows, dq, dk, dv,
                                                                          partials, dims, stream);
  });
}

}  // namespace badam::cuda_llama
