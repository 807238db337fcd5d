// The Llama kernels of the CUDA device (issue 12). Each kernel is small and named for what it computes, with
// its shapes in a comment and its launch beside it; the per-element math is llama_math.h's, shared with the
// CPU reference (llama_reference.cc), so what only a GPU can test is the indexing and the launches. The
// device check (packages/cuda/device-check.sh) runs each one against the CPU device on the same inputs.
//
// Activations are loaded as fp32 and stored back rounded (load_f32 / store_f32, dtype as an int: 0 float32,
// 1 bfloat16, 2 float16); every sum is fp32. Tokens are rows: N = batch * seq_len, token n = b * seq_len + s.
#include <cuda_runtime.h>

#include <algorithm>

#include "cuda_check.h"
#include "llama_kernels.h"
#include "llama_math.h"

namespace badam::cuda_llama {
namespace {

using llama::load_f32;
using llama::store_f32;

constexpr int kThreads = 256;
constexpr unsigned kFullMask = 0xffffffffu;

/** Blocks of kThreads for a grid-stride loop over n elements (capped; the loop covers the rest). */
int blocks_for(size_t n) {
  const size_t b = (n + kThreads - 1) / kThreads;
  return static_cast<int>(std::min<size_t>(std::max<size_t>(b, 1), 65535 * 8));
}

int dt(DType t) { return static_cast<int>(t); }

#define GRID_STRIDE(i, n) \
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < (n); i += static_cast<size_t>(gridDim.x) * blockDim.x)

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

/** Sum over the block (blockDim.x a multiple of 32, at most 1024), returned to every thread. */
__device__ float block_sum(float v) {
  __shared__ float partial[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < static_cast<int>(blockDim.x >> 5) ? partial[lane] : 0.0f;
    v = warp_sum(v);
    if (lane == 0) partial[0] = v;
  }
  __syncthreads();
  const float total = partial[0];
  __syncthreads();  // partial is reused by the next call
  return total;
}

// --- embedding ---------------------------------------------------------------------------------------------

// table [vocab, hidden], ids [n] -> out [n, hidden]; one thread per output element.
__global__ void embedding_kernel(const void* table, int table_dtype, const int32_t* ids, void* out, int out_dtype,
                                 size_t n, size_t vocab, size_t hidden) {
  GRID_STRIDE(i, n * hidden) {
    const int32_t id = ids[i / hidden];
    const bool valid = id >= 0 && static_cast<size_t>(id) < vocab;
    store_f32(out, out_dtype, i, valid ? load_f32(table, table_dtype, static_cast<size_t>(id) * hidden + i % hidden) : 0.0f);
  }
}

// d_out [n, hidden] -> d_table [vocab, hidden] (+=); repeated ids add with atomics (order not fixed).
__global__ void embedding_backward_kernel(const void* d_out, int d_out_dtype, const int32_t* ids, float* d_table,
                                          size_t n, size_t vocab, size_t hidden) {
  GRID_STRIDE(i, n * hidden) {
    const int32_t id = ids[i / hidden];
    if (id < 0 || static_cast<size_t>(id) >= vocab) continue;
    atomicAdd(d_table + static_cast<size_t>(id) * hidden + i % hidden, load_f32(d_out, d_out_dtype, i));
  }
}

}  // namespace

void embedding(const void* table, DType table_dtype, const int32_t* ids, void* out, DType out_dtype, size_t n,
               size_t vocab, size_t hidden, cudaStream_t stream) {
  embedding_kernel<<<blocks_for(n * hidden), kThreads, 0, stream>>>(table, dt(table_dtype), ids, out, dt(out_dtype), n,
                                                                   vocab, hidden);
  LAUNCH_CHECK();
}

void embedding_backward(const void* d_out, DType d_out_dtype, const int32_t* ids, float* d_table, size_t n,
                        size_t vocab, size_t hidden, cudaStream_t stream) {
  embedding_backward_kernel<<<blocks_for(n * hidden), kThreads, 0, stream>>>(d_out, dt(d_out_dtype), ids, d_table, n,
                                                                            vocab, hidden);
  LAUNCH_CHECK();
}

// --- RMSNorm -------------------------------------------------------------------------------------------------

namespace {

// x, out [n, hidden], weight [hidden], rstd [n]; one block per row.
__global__ void rms_norm_kernel(const void* x, int x_dtype, const void* weight, int w_dtype, void* out, int out_dtype,
                                float* rstd, size_t hidden, float eps) {
  const size_t base = blockIdx.x * hidden;
  float ss = 0.0f;
  for (size_t c = threadIdx.x; c < hidden; c += blockDim.x) {
    const float xv = load_f32(x, x_dtype, base + c);
    ss += xv * xv;
  }
  const float r = llama::rms_rstd(block_sum(ss), static_cast<int>(hidden), eps);
  if (threadIdx.x == 0) rstd[blockIdx.x] = r;
  for (size_t c = threadIdx.x; c < hidden; c += blockDim.x) {
    store_f32(out, out_dtype, base + c,
              llama::rms_norm_value(load_f32(x, x_dtype, base + c), r, load_f32(weight, w_dtype, c), x_dtype));
  }
}

// d_out, x, dx [n, hidden]; one block per row: dx = (or +=) the input gradient.
__global__ void rms_norm_dx_kernel(const void* d_out, int d_out_dtype, const void* x, int x_dtype, const void* weight,
                                   int w_dtype, const float* rstd, void* dx, int dx_dtype, size_t hidden,
                                   bool accumulate_dx) {
  const size_t base = blockIdx.x * hidden;
  float gx = 0.0f;
  for (size_t c = threadIdx.x; c < hidden; c += blockDim.x) {
    gx += load_f32(d_out, d_out_dtype, base + c) * load_f32(weight, w_dtype, c) * load_f32(x, x_dtype, base + c);
  }
  const float mean_gx = block_sum(gx) / static_cast<float>(hidden);
  const float r = rstd[blockIdx.x];
  for (size_t c = threadIdx.x; c < hidden; c += blockDim.x) {
    float d = llama::rms_norm_dx(load_f32(d_out, d_out_dtype, base + c), load_f32(weight, w_dtype, c),
                                 load_f32(x, x_dtype, base + c), r, mean_gx);
    if (accumulate_dx) d += load_f32(dx, dx_dtype, base + c);
    store_f32(dx, dx_dtype, base + c, d);
  }
}

// d_weight [hidden] += sum over the n rows of d_out * x * rstd; one thread per column, rows in order
// (deterministic, coalesced across the threads of a warp).
__global__ void rms_norm_d_weight_kernel(const void* d_out, int d_out_dtype, const void* x, int x_dtype,
                                         const float* rstd, float* d_weight, size_t n, size_t hidden) {
  GRID_STRIDE(c, hidden) {
    float acc = 0.0f;
    for (size_t t = 0; t < n; t++) acc += load_f32(d_out, d_out_dtype, t * hidden + c) * load_f32(x, x_dtype, t * hidden + c) * rstd[t];
    d_weight[c] += acc;
  }
}

}  // namespace

void rms_norm(const void* x, DType x_dtype, const void* weight, DType w_dtype, void* out, DType out_dtype, float* rstd,
              size_t n, size_t hidden, float eps, cudaStream_t stream) {
  rms_norm_kernel<<<static_cast<unsigned>(n), kThreads, 0, stream>>>(x, dt(x_dtype), weight, dt(w_dtype), out,
                                                                      dt(out_dtype), rstd, hidden, eps);
  LAUNCH_CHECK();
}

void rms_norm_backward(const void* d_out, DType d_out_dtype, const void* x, DType x_dtype, const void* weight,
                       DType w_dtype, const float* rstd, void* dx, DType dx_dtype, float* d_weight, size_t n,
                       size_t hidden, bool accumulate_dx, cudaStream_t stream) {
  // dWeight first: dx may alias dOut (an in-place backward) and is written by the second kernel.
  if (d_weight != nullptr) {
    rms_norm_d_weight_kernel<<<blocks_for(hidden), kThreads, 0, stream>>>(d_out, dt(d_out_dtype), x, dt(x_dtype), rstd,
                                                                         d_weight, n, hidden);
    LAUNCH_CHECK();
  }
  rms_norm_dx_kernel<<<static_cast<unsigned>(n), kThreads, 0, stream>>>(d_out, dt(d_out_dtype), x, dt(x_dtype), weight,
                                                                          dt(w_dtype), rstd, dx, dt(dx_dtype), hidden,
                                                                          accumulate_dx);
  LAUNCH_CHECK();
}

// --- rope ----------------------------------------------------------------------------------------------------

namespace {

// x [n, heads * head_dim] in place, cos / sin [max_pos, head_dim / 2]; one thread per rotated pair.
__global__ void rope_kernel(void* x, int dtype, const float* cos, const float* sin, size_t n, int seq_len, int heads,
                            int head_dim, bool inverse) {
  const int half = head_dim / 2;
  GRID_STRIDE(p, n * heads * half) {
    const size_t i = p % half;
    const size_t token_head = p / half;  // token * heads + head
    const size_t pos = (token_head / heads) % seq_len;
    const size_t a = token_head * head_dim + i;
    float x1 = load_f32(x, dtype, a), x2 = load_f32(x, dtype, a + half);
    llama::rope_rotate(x1, x2, cos[pos * half + i], sin[pos * half + i], inverse);
    store_f32(x, dtype, a, x1);
    store_f32(x, dtype, a + half, x2);
  }
}

}  // namespace

void rope(void* x, DType dtype, const float* cos, const float* sin, size_t n, int seq_len, int heads, int head_dim,
          bool inverse, cudaStream_t stream) {
  rope_kernel<<<blocks_for(n * heads * (head_dim / 2)), kThreads, 0, stream>>>(x, dt(dtype), cos, sin, n, seq_len, heads,
                                                                              head_dim, inverse);
  LAUNCH_CHECK();
}

// --- attention -----------------------------------------------------------------------------------------------
//
// Flash-style: a block owns 32 query rows of one (batch, head) and walks the key tiles of 32 keys it can see,
// each staged in shared memory as fp32; a warp owns 4 query rows. For the scores a lane is a key (its dot
// product with the 4 rows), for the output a lane is a dimension (lane, lane + 32, ... < head_dim <= 128).
// The running softmax (max m, sum l) rescales the accumulator as tiles arrive: no [t, t] matrix anywhere.

namespace {

constexpr int kWarps = 8;                     // 256 threads
constexpr int kTile = 32;                     // queries per block = keys per tile = lanes
constexpr int kRowsPerWarp = kTile / kWarps;  // 4
constexpr int kMaxHeadDim = 128;
constexpr int kDimsPerLane = kMaxHeadDim / 32;  // 4

/** tile[r * ld + i] = head `head` of token (b, s0 + r), fp32; 0 for rows past the sequence. */
__device__ void load_head_tile(float* tile, int ld, const void* src, int dtype, int b, int s0, int seq_len,
                               int heads_in_row, int head, int head_dim) {
  for (int e = threadIdx.x; e < kTile * head_dim; e += blockDim.x) {
    const int r = e / head_dim, i = e % head_dim, s = s0 + r;
    tile[r * ld + i] = s < seq_len
                           ? load_f32(src, dtype, ((static_cast<size_t>(b) * seq_len + s) * heads_in_row + head) * head_dim + i)
                           : 0.0f;
  }
}

/** Index of element i of head h of token (b, s) in a [N, heads * head_dim] tensor. */
__device__ __forceinline__ size_t head_at(const ref::AttentionDims& d, int b, int s, int heads, int h, int i) {
  return ((static_cast<size_t>(b) * d.seq_len + s) * heads + h) * d.head_dim + i;
}

/** Keys [0, end) that some query of the tile [q0, q0 + kTile) can see. */
__device__ __forceinline__ int key_end_for(const ref::AttentionDims& d, int q0, int length) {
  return d.causal ? min(length, min(q0 + kTile, d.seq_len)) : length;
}

// q, out [N, heads * d]; k, v [N, kv_heads * d]; lse [batch, heads, seq_len].
// grid (ceil(seq_len / 32), heads, batch), 256 threads, dynamic shared memory: q [32][d], k [32][d + 1], v [32][d].
__global__ void attention_forward_kernel(const void* q, const void* k, const void* v, void* out, float* lse, int dtype,
                                         ref::AttentionDims d) {
  extern __shared__ float smem[];
  const int D = d.head_dim, ldk = D + 1;  // k's odd stride: lane j reads row j without bank conflicts
  float* q_tile = smem;
  float* k_tile = q_tile + kTile * D;
  float* v_tile = k_tile + kTile * ldk;
  const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * kTile;
  const int kvh = h / (d.heads / d.kv_heads);
  const int length = llama::row_length(d.lengths, b, d.seq_len);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

  load_head_tile(q_tile, D, q, dtype, b, q0, d.seq_len, d.heads, h, D);
  float m[kRowsPerWarp], l[kRowsPerWarp], acc[kRowsPerWarp][kDimsPerLane];
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; rr++) {
    m[rr] = -INFINITY;
    l[rr] = 0.0f;
#pragma unroll
    for (int c = 0; c < kDimsPerLane; c++) acc[rr][c] = 0.0f;
  }

  const int key_end = key_end_for(d, q0, length);
  for (int k0 = 0; k0 < key_end; k0 += kTile) {
    __syncthreads();  // the previous tile is consumed
    load_head_tile(k_tile, ldk, k, dtype, b, k0, d.seq_len, d.kv_heads, kvh, D);
    load_head_tile(v_tile, D, v, dtype, b, k0, d.seq_len, d.kv_heads, kvh, D);
    __syncthreads();
    // Scores: lane = key k0 + lane, against the warp's 4 rows.
    float score[kRowsPerWarp] = {};
    for (int i = 0; i < D; i++) {
      const float kv = k_tile[lane * ldk + i];
#pragma unroll
      for (int rr = 0; rr < kRowsPerWarp; rr++) score[rr] += q_tile[(warp * kRowsPerWarp + rr) * D + i] * kv;
    }
    float p[kRowsPerWarp];
#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; rr++) {
      const int s = q0 + warp * kRowsPerWarp + rr;
      const bool visible = s < d.seq_len && llama::key_visible(k0 + lane, s, length, d.causal);
      const float sc = visible ? score[rr] * d.scale : -INFINITY;
      const float m_new = fmaxf(m[rr], warp_max(sc));
      p[rr] = 0.0f;
      if (m_new == -INFINITY) continue;  // nothing visible to this row yet (uniform across the warp)
      const float rescale = llama::softmax_rescale(m[rr], m_new);
      p[rr] = llama::attention_prob(sc, m_new);  // exp(-inf) = 0 for masked keys
      l[rr] = l[rr] * rescale + warp_sum(p[rr]);
#pragma unroll
      for (int c = 0; c < kDimsPerLane; c++) acc[rr][c] *= rescale;
      m[rr] = m_new;
    }
    // Output: lane = dimension; p of key j broadcast from lane j.
    for (int j = 0; j < kTile; j++) {
      float vj[kDimsPerLane];
#pragma unroll
      for (int c = 0; c < kDimsPerLane; c++) vj[c] = lane + 32 * c < D ? v_tile[j * D + lane + 32 * c] : 0.0f;
#pragma unroll
      for (int rr = 0; rr < kRowsPerWarp; rr++) {
        const float pj = __shfl_sync(kFullMask, p[rr], j);
#pragma unroll
        for (int c = 0; c < kDimsPerLane; c++) acc[rr][c] += pj * vj[c];
      }
    }
  }

#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; rr++) {
    const int s = q0 + warp * kRowsPerWarp + rr;
    if (s >= d.seq_len) continue;
#pragma unroll
    for (int c = 0; c < kDimsPerLane; c++) {
      const int i = lane + 32 * c;
      if (i < D) store_f32(out, dtype, head_at(d, b, s, d.heads, h, i), llama::attention_output(acc[rr][c], l[rr]));
    }
    if (lane == 0) lse[(static_cast<size_t>(b) * d.heads + h) * d.seq_len + s] = llama::softmax_lse(m[rr], l[rr]);
  }
}

// d_rows [batch, heads, seq_len] = rowsum(dOut * out) per query row and head; one warp per row.
__global__ void attention_d_rows_kernel(const void* out, const void* d_out, float* d_rows, int dtype,
                                        ref::AttentionDims d) {
  const size_t rows = static_cast<size_t>(d.batch) * d.heads * d.seq_len;
  const size_t row = (blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  if (row >= rows) return;  // whole warps leave together
  const int s = static_cast<int>(row % d.seq_len);
  const int h = static_cast<int>((row / d.seq_len) % d.heads);
  const int b = static_cast<int>(row / (static_cast<size_t>(d.seq_len) * d.heads));
  float acc = 0.0f;
  for (int i = lane; i < d.head_dim; i += 32) {
    const size_t a = head_at(d, b, s, d.heads, h, i);
    acc += load_f32(d_out, dtype, a) * load_f32(out, dtype, a);
  }
  acc = warp_sum(acc);
  if (lane == 0) d_rows[row] = acc;
}

// dq [N, heads * d] = dS k over the visible keys, dS = P (dP - D) scale, P = exp(score - lse), dP = dOut v.
// grid (ceil(seq_len / 32), heads, batch), 256 threads; shared: q, dOut [32][d], k, v [32][d + 1].
// Like the forward: lane = key for P and dP, lane = dimension for dq. No atomics: a block owns its rows.
__global__ void attention_dq_kernel(const void* q, const void* k, const void* v, const void* d_out, const float* lse,
                                    const float* d_rows, void* dq, int dtype, ref::AttentionDims d) {
  extern __shared__ float smem[];
  const int D = d.head_dim, ldk = D + 1;
  float* q_tile = smem;
  float* do_tile = q_tile + kTile * D;
  float* k_tile = do_tile + kTile * D;
  float* v_tile = k_tile + kTile * ldk;
  const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * kTile;
  const int kvh = h / (d.heads / d.kv_heads);
  const int length = llama::row_length(d.lengths, b, d.seq_len);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

  load_head_tile(q_tile, D, q, dtype, b, q0, d.seq_len, d.heads, h, D);
  load_head_tile(do_tile, D, d_out, dtype, b, q0, d.seq_len, d.heads, h, D);
  float row_lse[kRowsPerWarp], row_d[kRowsPerWarp], acc[kRowsPerWarp][kDimsPerLane];
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; rr++) {
    const int s = q0 + warp * kRowsPerWarp + rr;
    const size_t row = (static_cast<size_t>(b) * d.heads + h) * d.seq_len + s;
    row_lse[rr] = s < d.seq_len ? lse[row] : 0.0f;
    row_d[rr] = s < d.seq_len ? d_rows[row] : 0.0f;
#pragma unroll
    for (int c = 0; c < kDimsPerLane; c++) acc[rr][c] = 0.0f;
  }

  const int key_end = key_end_for(d, q0, length);
  for (int k0 = 0; k0 < key_end; k0 += kTile) {
    __syncthreads();
    load_head_tile(k_tile, ldk, k, dtype, b, k0, d.seq_len, d.kv_heads, kvh, D);
    load_head_tile(v_tile, ldk, v, dtype, b, k0, d.seq_len, d.kv_heads, kvh, D);
    __syncthreads();
    float score[kRowsPerWarp] = {}, dp[kRowsPerWarp] = {};
    for (int i = 0; i < D; i++) {
      const float kv = k_tile[lane * ldk + i], vv = v_tile[lane * ldk + i];
#pragma unroll
      for (int rr = 0; rr < kRowsPerWarp; rr++) {
        score[rr] += q_tile[(warp * kRowsPerWarp + rr) * D + i] * kv;
        dp[rr] += do_tile[(warp * kRowsPerWarp + rr) * D + i] * vv;
      }
    }
    float ds[kRowsPerWarp];
#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; rr++) {
      const int s = q0 + warp * kRowsPerWarp + rr;
      const bool visible = s < d.seq_len && llama::key_visible(k0 + lane, s, length, d.causal);
      const float p = visible ? llama::attention_prob(score[rr] * d.scale, row_lse[rr]) : 0.0f;
      ds[rr] = visible ? llama::attention_d_score(p, dp[rr], row_d[rr], d.scale) : 0.0f;
    }
    for (int j = 0; j < kTile; j++) {
      float kj[kDimsPerLane];
#pragma unroll
      for (int c = 0; c < kDimsPerLane; c++) kj[c] = lane + 32 * c < D ? k_tile[j * ldk + lane + 32 * c] : 0.0f;
#pragma unroll
      for (int rr = 0; rr < kRowsPerWarp; rr++) {
        const float dsj = __shfl_sync(kFullMask, ds[rr], j);
#pragma unroll
        for (int c = 0; c < kDimsPerLane; c++) acc[rr][c] += dsj * kj[c];
      }
    }
  }

#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; rr++) {
    const int s = q0 + warp * kRowsPerWarp + rr;
    if (s >= d.seq_len) continue;
#pragma unroll
    for (int c = 0; c < kDimsPerLane; c++) {
      const int i = lane + 32 * c;
      if (i < D) store_f32(dq, dtype, head_at(d, b, s, d.heads, h, i), acc[rr][c]);
    }
  }
}

// dk = dS^T q and dv = P^T dOut [N, kv_heads * d] for 32 keys of one kv head, summed over the query heads of
// its group and every query tile that can see the keys. grid (ceil(seq_len / 32), kv_heads, batch), 256
// threads, a warp owns 4 keys; lane = query for P and dS, lane = dimension for dk and dv.
// Shared: k, v [32][d] (read as broadcasts), q, dOut [32][d + 1], lse and D of the 32 queries.
__global__ void attention_dkv_kernel(const void* q, const void* k, const void* v, const void* d_out, const float* lse,
                                     const float* d_rows, void* dk, void* dv, int dtype, ref::AttentionDims d) {
  extern __shared__ float smem[];
  const int D = d.head_dim, ldq = D + 1;
  float* k_tile = smem;
  float* v_tile = k_tile + kTile * D;
  float* q_tile = v_tile + kTile * D;
  float* do_tile = q_tile + kTile * ldq;
  float* lse_tile = do_tile + kTile * ldq;
  float* d_tile = lse_tile + kTile;
  const int b = blockIdx.z, kvh = blockIdx.y, k0 = blockIdx.x * kTile;
  const int group = d.heads / d.kv_heads;
  const int length = llama::row_length(d.lengths, b, d.seq_len);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  constexpr int kKeysPerWarp = kTile / kWarps;  // 4

  load_head_tile(k_tile, D, k, dtype, b, k0, d.seq_len, d.kv_heads, kvh, D);
  load_head_tile(v_tile, D, v, dtype, b, k0, d.seq_len, d.kv_heads, kvh, D);
  float dk_acc[kKeysPerWarp][kDimsPerLane] = {}, dv_acc[kKeysPerWarp][kDimsPerLane] = {};

  // Keys at or past the row's length are masked for every query: their gradients stay 0.
  const int q_start = d.causal ? k0 : 0;  // queries before k0 see none of these keys
  for (int g = 0; k0 < length && g < group; g++) {
    const int h = kvh * group + g;
    for (int qs = q_start; qs < d.seq_len; qs += kTile) {
      __syncthreads();  // the previous query tile is consumed (and k, v are loaded)
      load_head_tile(q_tile, ldq, q, dtype, b, qs, d.seq_len, d.heads, h, D);
      load_head_tile(do_tile, ldq, d_out, dtype, b, qs, d.seq_len, d.heads, h, D);
      if (threadIdx.x < kTile) {
        const int s = qs + threadIdx.x;
        const size_t row = (static_cast<size_t>(b) * d.heads + h) * d.seq_len + s;
        lse_tile[threadIdx.x] = s < d.seq_len ? lse[row] : 0.0f;
        d_tile[threadIdx.x] = s < d.seq_len ? d_rows[row] : 0.0f;
      }
      __syncthreads();
      const int s = qs + lane;
      float score[kKeysPerWarp] = {}, dp[kKeysPerWarp] = {};
      for (int i = 0; i < D; i++) {
        const float qv = q_tile[lane * ldq + i], dov = do_tile[lane * ldq + i];
#pragma unroll
        for (int kk = 0; kk < kKeysPerWarp; kk++) {
          score[kk] += qv * k_tile[(warp * kKeysPerWarp + kk) * D + i];
          dp[kk] += dov * v_tile[(warp * kKeysPerWarp + kk) * D + i];
        }
      }
      float p[kKeysPerWarp], ds[kKeysPerWarp];
#pragma unroll
      for (int kk = 0; kk < kKeysPerWarp; kk++) {
        const int key = k0 + warp * kKeysPerWarp + kk;
        const bool visible = s < d.seq_len && llama::key_visible(key, s, length, d.causal);
        p[kk] = visible ? llama::attention_prob(score[kk] * d.scale, lse_tile[lane]) : 0.0f;
        ds[kk] = visible ? llama::attention_d_score(p[kk], dp[kk], d_tile[lane], d.scale) : 0.0f;
      }
      for (int r = 0; r < kTile; r++) {
        float qr[kDimsPerLane], dor[kDimsPerLane];
#pragma unroll
        for (int c = 0; c < kDimsPerLane; c++) {
          const bool in = lane + 32 * c < D;
          qr[c] = in ? q_tile[r * ldq + lane + 32 * c] : 0.0f;
          dor[c] = in ? do_tile[r * ldq + lane + 32 * c] : 0.0f;
        }
#pragma unroll
        for (int kk = 0; kk < kKeysPerWarp; kk++) {
          const float pr = __shfl_sync(kFullMask, p[kk], r), dsr = __shfl_sync(kFullMask, ds[kk], r);
#pragma unroll
          for (int c = 0; c < kDimsPerLane; c++) {
            dv_acc[kk][c] += pr * dor[c];
            dk_acc[kk][c] += dsr * qr[c];
          }
        }
      }
    }
  }

#pragma unroll
  for (int kk = 0; kk < kKeysPerWarp; kk++) {
    const int key = k0 + warp * kKeysPerWarp + kk;
    if (key >= d.seq_len) continue;
#pragma unroll
    for (int c = 0; c < kDimsPerLane; c++) {
      const int i = lane + 32 * c;
      if (i >= D) continue;
      const size_t a = head_at(d, b, key, d.kv_heads, kvh, i);
      store_f32(dk, dtype, a, dk_acc[kk][c]);
      store_f32(dv, dtype, a, dv_acc[kk][c]);
    }
  }
}

/** Launches `kernel` with `bytes` of dynamic shared memory, raising its limit past 48 KiB when needed. */
template <typename Kernel>
void allow_shared(Kernel kernel, size_t bytes) {
  if (bytes > 48 * 1024) {
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  }
}

dim3 attention_grid(const ref::AttentionDims& d, int heads) {
  return dim3(static_cast<unsigned>((d.seq_len + kTile - 1) / kTile), static_cast<unsigned>(heads),
              static_cast<unsigned>(d.batch));
}

}  // namespace

void attention(const void* q, const void* k, const void* v, void* out, float* lse, DType dtype,
               const ref::AttentionDims& dims, cudaStream_t stream) {
  const size_t D = static_cast<size_t>(dims.head_dim);
  const size_t bytes = sizeof(float) * (kTile * D + kTile * (D + 1) + kTile * D);
  allow_shared(attention_forward_kernel, bytes);
  attention_forward_kernel<<<attention_grid(dims, dims.heads), kWarps * 32, bytes, stream>>>(q, k, v, out, lse, dt(dtype),
                                                                                             dims);
  LAUNCH_CHECK();
}

void attention_backward(const void* q, const void* k, const void* v, const void* out, const void* d_out,
                        const float* lse, void* dq, void* dk, void* dv, float* d_rows, DType dtype,
                        const ref::AttentionDims& dims, cudaStream_t stream) {
  const size_t D = static_cast<size_t>(dims.head_dim);
  const size_t rows = static_cast<size_t>(dims.batch) * dims.heads * dims.seq_len;
  attention_d_rows_kernel<<<static_cast<unsigned>((rows * 32 + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
      out, d_out, d_rows, dt(dtype), dims);
  LAUNCH_CHECK();

  const size_t dq_bytes = sizeof(float) * (2 * kTile * D + 2 * kTile * (D + 1));
  allow_shared(attention_dq_kernel, dq_bytes);
  attention_dq_kernel<<<attention_grid(dims, dims.heads), kWarps * 32, dq_bytes, stream>>>(q, k, v, d_out, lse, d_rows, dq,
                                                                                          dt(dtype), dims);
  LAUNCH_CHECK();

  const size_t dkv_bytes = sizeof(float) * (2 * kTile * D + 2 * kTile * (D + 1) + 2 * kTile);
  allow_shared(attention_dkv_kernel, dkv_bytes);
  attention_dkv_kernel<<<attention_grid(dims, dims.kv_heads), kWarps * 32, dkv_bytes, stream>>>(
      q, k, v, d_out, lse, d_rows, dk, dv, dt(dtype), dims);
  LAUNCH_CHECK();
}

// --- SwiGLU, add, bias -------------------------------------------------------------------------------------

namespace {

// gate, up, out [n]
__global__ void swiglu_kernel(const void* gate, int gate_dtype, const void* up, int up_dtype, void* out, int out_dtype,
                              size_t n) {
  GRID_STRIDE(i, n) {
    store_f32(out, out_dtype, i, llama::swiglu_value(load_f32(gate, gate_dtype, i), load_f32(up, up_dtype, i)));
  }
}

// gate, up, d_out -> d_gate, d_up [n]
__global__ void swiglu_backward_kernel(const void* gate, int gate_dtype, const void* up, int up_dtype, const void* d_out,
                                       int d_out_dtype, void* d_gate, int d_gate_dtype, void* d_up, int d_up_dtype,
                                       size_t n) {
  GRID_STRIDE(i, n) {
    const float g = load_f32(gate, gate_dtype, i), u = load_f32(up, up_dtype, i), d = load_f32(d_out, d_out_dtype, i);
    store_f32(d_gate, d_gate_dtype, i, llama::swiglu_d_gate(g, u, d));
    store_f32(d_up, d_up_dtype, i, llama::swiglu_d_up(g, d));
  }
}

// out = a + b [n]
__global__ void add_kernel(const void* a, int a_dtype, const void* b, int b_dtype, void* out, int out_dtype, size_t n) {
  GRID_STRIDE(i, n) store_f32(out, out_dtype, i, load_f32(a, a_dtype, i) + load_f32(b, b_dtype, i));
}

// x [n / channels, channels] += bias [channels]
__global__ void add_bias_kernel(void* x, int x_dtype, const void* bias, int bias_dtype, size_t n, size_t channels) {
  GRID_STRIDE(i, n) store_f32(x, x_dtype, i, load_f32(x, x_dtype, i) + load_f32(bias, bias_dtype, i % channels));
}

// d_bias [channels] += column sums of d_out [n / channels, channels]; one thread per column, rows in order.
__global__ void bias_backward_kernel(const void* d_out, int d_out_dtype, float* d_bias, size_t rows, size_t channels) {
  GRID_STRIDE(c, channels) {
    float acc = 0.0f;
    for (size_t r = 0; r < rows; r++) acc += load_f32(d_out, d_out_dtype, r * channels + c);
    d_bias[c] += acc;
  }
}

}  // namespace

void swiglu(const void* gate, DType gate_dtype, const void* up, DType up_dtype, void* out, DType out_dtype, size_t n,
            cudaStream_t stream) {
  swiglu_kernel<<<blocks_for(n), kThreads, 0, stream>>>(gate, dt(gate_dtype), up, dt(up_dtype), out, dt(out_dtype), n);
  LAUNCH_CHECK();
}

void swiglu_backward(const void* gate, DType gate_dtype, const void* up, DType up_dtype, const void* d_out,
                     DType d_out_dtype, void* d_gate, DType d_gate_dtype, void* d_up, DType d_up_dtype, size_t n,
                     cudaStream_t stream) {
  swiglu_backward_kernel<<<blocks_for(n), kThreads, 0, stream>>>(gate, dt(gate_dtype), up, dt(up_dtype), d_out,
                                                                 dt(d_out_dtype), d_gate, dt(d_gate_dtype), d_up,
                                                                 dt(d_up_dtype), n);
  LAUNCH_CHECK();
}

void add(const void* a, DType a_dtype, const void* b, DType b_dtype, void* out, DType out_dtype, size_t n,
         cudaStream_t stream) {
  add_kernel<<<blocks_for(n), kThreads, 0, stream>>>(a, dt(a_dtype), b, dt(b_dtype), out, dt(out_dtype), n);
  LAUNCH_CHECK();
}

void add_bias(void* x, DType x_dtype, const void* bias, DType bias_dtype, size_t n, size_t channels, cudaStream_t stream) {
  add_bias_kernel<<<blocks_for(n), kThreads, 0, stream>>>(x, dt(x_dtype), bias, dt(bias_dtype), n, channels);
  LAUNCH_CHECK();
}

void bias_backward(const void* d_out, DType d_out_dtype, float* d_bias, size_t n, size_t channels, cudaStream_t stream) {
  bias_backward_kernel<<<blocks_for(channels), kThreads, 0, stream>>>(d_out, dt(d_out_dtype), d_bias, n / channels,
                                                                       channels);
  LAUNCH_CHECK();
}

// --- cross-entropy, argmax, sum -------------------------------------------------------------------------------

namespace {

constexpr int kRowThreads = 512;  // one block per row of up to 128256 logits

// logits [rows, vocab] (gradient in place when grad_scale != 0), labels [rows], losses [rows]; one block per row:
// an online max / sum per thread, merged across the block, then (with a gradient) a second pass over the row.
__global__ void cross_entropy_kernel(void* logits, int dtype, const int32_t* labels, float* losses, size_t vocab,
                                     float grad_scale) {
  __shared__ float warp_m[32], warp_l[32];
  __shared__ float row_lse;
  const size_t base = blockIdx.x * vocab;
  const int32_t label = labels[blockIdx.x];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (label < 0 || static_cast<size_t>(label) >= vocab) {  // ignored (-100), or out of range: the caller's error
    if (threadIdx.x == 0) losses[blockIdx.x] = label < 0 ? 0.0f : __int_as_float(0x7fc00000);
    if (grad_scale != 0.0f) {
      for (size_t c = threadIdx.x; c < vocab; c += blockDim.x) store_f32(logits, dtype, base + c, 0.0f);
    }
    return;
  }
  float m = -INFINITY, l = 0.0f;
  for (size_t c = threadIdx.x; c < vocab; c += blockDim.x) llama::softmax_add(m, l, load_f32(logits, dtype, base + c));
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float m2 = __shfl_xor_sync(kFullMask, m, offset), l2 = __shfl_xor_sync(kFullMask, l, offset);
    llama::softmax_merge(m, l, m2, l2);
  }
  if (lane == 0) {
    warp_m[warp] = m;
    warp_l[warp] = l;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    float mt = -INFINITY, lt = 0.0f;
    for (int w = 0; w < static_cast<int>(blockDim.x >> 5); w++) llama::softmax_merge(mt, lt, warp_m[w], warp_l[w]);
    row_lse = llama::softmax_lse(mt, lt);
    losses[blockIdx.x] = row_lse - load_f32(logits, dtype, base + static_cast<size_t>(label));
  }
  __syncthreads();  // the label's logit is read before anyone overwrites it
  if (grad_scale == 0.0f) return;
  const float lse = row_lse;
  for (size_t c = threadIdx.x; c < vocab; c += blockDim.x) {
    const float g = llama::cross_entropy_grad(load_f32(logits, dtype, base + c), lse, c == static_cast<size_t>(label), grad_scale);
    store_f32(logits, dtype, base + c, g);
  }
}

// out[r] = argmax of row r of x [rows, cols] (first on ties, NaNs skipped); one block per row.
__global__ void argmax_rows_kernel(const void* x, int dtype, int32_t* out, size_t cols) {
  __shared__ float warp_v[32];
  __shared__ int warp_i[32];
  const size_t base = blockIdx.x * cols;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float best_v = -INFINITY;
  int best_i = -1;
  for (size_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const float v = load_f32(x, dtype, base + c);
    if (llama::argmax_better(v, static_cast<int>(c), best_v, best_i)) {
      best_v = v;
      best_i = static_cast<int>(c);
    }
  }
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float v = __shfl_xor_sync(kFullMask, best_v, offset);
    const int i = __shfl_xor_sync(kFullMask, best_i, offset);
    if (llama::argmax_better(v, i, best_v, best_i)) {
      best_v = v;
      best_i = i;
    }
  }
  if (lane == 0) {
    warp_v[warp] = best_v;
    warp_i[warp] = best_i;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < static_cast<int>(blockDim.x >> 5); w++) {
      if (llama::argmax_better(warp_v[w], warp_i[w], best_v, best_i)) {
        best_v = warp_v[w];
        best_i = warp_i[w];
      }
    }
    out[blockIdx.x] = best_i < 0 ? 0 : best_i;
  }
}

// partials[block] = the sum of a grid-stride share of x, in double (fixed grid: deterministic).
__global__ void sum_partial_kernel(const void* x, int dtype, size_t n, double* partials) {
  __shared__ double shared[kThreads];
  double s = 0.0;
  GRID_STRIDE(i, n) s += load_f32(x, dtype, i);
  shared[threadIdx.x] = s;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
    if (static_cast<int>(threadIdx.x) < stride) shared[threadIdx.x] += shared[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) partials[blockIdx.x] = shared[0];
}

// out = the sum of count partials; one block.
__global__ void sum_final_kernel(const double* partials, int count, double* out) {
  __shared__ double shared[kThreads];
  double s = 0.0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) s += partials[i];
  shared[threadIdx.x] = s;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
    if (static_cast<int>(threadIdx.x) < stride) shared[threadIdx.x] += shared[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = shared[0];
}

}  // namespace

void cross_entropy(void* logits, DType dtype, const int32_t* labels, float* losses, size_t rows, size_t vocab,
                   float grad_scale, cudaStream_t stream) {
  cross_entropy_kernel<<<static_cast<unsigned>(rows), kRowThreads, 0, stream>>>(logits, dt(dtype), labels, losses, vocab,
                                                                                grad_scale);
  LAUNCH_CHECK();
}

void argmax_rows(const void* x, DType dtype, int32_t* out, size_t rows, size_t cols, cudaStream_t stream) {
  argmax_rows_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(x, dt(dtype), out, cols);
  LAUNCH_CHECK();
}

double sum(const void* x, DType dtype, size_t n, double* partials, int partial_count, cudaStream_t stream) {
  sum_partial_kernel<<<partial_count, kThreads, 0, stream>>>(x, dt(dtype), n, partials);
  LAUNCH_CHECK();
  sum_final_kernel<<<1, kThreads, 0, stream>>>(partials, partial_count, partials + partial_count);
  LAUNCH_CHECK();
  double out = 0;
  CUDA_CHECK(cudaMemcpyAsync(&out, partials + partial_count, sizeof(double), cudaMemcpyDeviceToHost, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  return out;
}

}  // namespace badam::cuda_llama
