// The Llama kernels of the CUDA device (issue 12). Each kernel is small and named for what it computes, with
// its shapes in a comment and its launch beside it; the per-element math is llama_math.h's, shared with the
// CPU reference (llama_reference.cc), so what only a GPU can test is the indexing and the launches. The
// device check (packages/cuda/device-check.sh) runs each one against the CPU device on the same inputs.
//
// Activations are loaded as fp32 and stored back rounded (load_f32 / store_f32, dtype as an int: 0 float32,
// 1 bfloat16, 2 float16); every sum is fp32. Tokens are rows: N = batch * seq_len, token n = b * seq_len + s.
// Attention has two sets of kernels: fp32 SIMT ones for any dtype and head dim, and tensor-core (WMMA) ones
// for bf16 / fp16 at head dim 64 or 128, picked per call (use_tensor_cores; BADAM_ATTENTION=simt forces SIMT).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <stdexcept>
#include <string>

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

// --- column sums (deterministic, two stages) -------------------------------------------------------------
//
// out[c] += sum over rows r of term(r, c), for dWeight of RMSNorm and dBias: stage 1 splits the rows into
// column_chunks(rows) chunks and writes each chunk's sum per column into a workspace, stage 2 adds the chunks
// in order. The order of every addition depends only on (rows, cols), so results repeat bit for bit, and the
// rows are spread over (cols / 32) * chunks blocks instead of one thread per column walking all of them.

constexpr int kColumnStrip = 32;    // columns of a stage-1 block: a warp's lanes, coalesced
constexpr int kColumnRowLanes = 8;  // rows of a chunk a stage-1 block reads at once
constexpr size_t kRowsPerChunk = 64;
constexpr size_t kMaxColumnChunks = 64;

size_t column_chunks(size_t rows) {
  return std::min(kMaxColumnChunks, std::max<size_t>(1, (rows + kRowsPerChunk - 1) / kRowsPerChunk));
}

// partials [chunks, cols] = per chunk of rows, the sum of term(r, c) over its rows (in order in each of the 8
// row lanes, then the 8 lanes in order). grid (ceil(cols / 32), chunks), block (32, 8).
template <typename Term>
__global__ void column_partial_sums_kernel(Term term, size_t rows, size_t cols, size_t rows_per_chunk, float* partials) {
  __shared__ float lane_sums[kColumnRowLanes][kColumnStrip];
  const size_t c = blockIdx.x * static_cast<size_t>(kColumnStrip) + threadIdx.x;
  const size_t r0 = blockIdx.y * rows_per_chunk, r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
  float acc = 0.0f;
  if (c < cols) {
    for (size_t r = r0 + threadIdx.y; r < r1; r += kColumnRowLanes) acc += term(r, c);
  }
  lane_sums[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    float sum = 0.0f;
    for (int lane = 0; lane < kColumnRowLanes; lane++) sum += lane_sums[lane][threadIdx.x];
    partials[blockIdx.y * cols + c] = sum;
  }
}

// out [cols] += the chunks' partial sums [chunks, cols], in chunk order; one thread per column.
__global__ void column_sums_kernel(const float* partials, size_t chunks, size_t cols, float* out) {
  GRID_STRIDE(c, cols) {
    float sum = 0.0f;
    for (size_t k = 0; k < chunks; k++) sum += partials[k * cols + c];
    out[c] += sum;
  }
}

/** out[c] += sum_r term(r, c) over rows x cols, through `workspace` (column_sum_workspace(rows, cols) floats). */
template <typename Term>
void add_column_sums(Term term, size_t rows, size_t cols, float* out, float* workspace, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;  // nothing to add (and no empty grid to launch)
  const size_t chunks = column_chunks(rows);
  const size_t rows_per_chunk = (rows + chunks - 1) / chunks;
  auto stage1 = column_partial_sums_kernel<Term>;
  stage1<<<dim3(static_cast<unsigned>((cols + kColumnStrip - 1) / kColumnStrip), static_cast<unsigned>(chunks)),
           dim3(kColumnStrip, kColumnRowLanes), 0, stream>>>(term, rows, cols, rows_per_chunk, workspace);
  LAUNCH_CHECK();
  column_sums_kernel<<<blocks_for(cols), kThreads, 0, stream>>>(workspace, chunks, cols, out);
  LAUNCH_CHECK();
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

/** dWeight's term of row t, column c: dOut * x * rstd (column sums over the rows give d_weight). */
struct RmsNormDWeightTerm {
  const void* d_out;
  int d_out_dtype;
  const void* x;
  int x_dtype;
  const float* rstd;
  size_t hidden;
  __device__ float operator()(size_t t, size_t c) const {
    return load_f32(d_out, d_out_dtype, t * hidden + c) * load_f32(x, x_dtype, t * hidden + c) * rstd[t];
  }
};

}  // namespace

void rms_norm(const void* x, DType x_dtype, const void* weight, DType w_dtype, void* out, DType out_dtype, float* rstd,
              size_t n, size_t hidden, float eps, cudaStream_t stream) {
  if (n == 0) return;  // no rows: an empty grid is a launch error
  rms_norm_kernel<<<static_cast<unsigned>(n), kThreads, 0, stream>>>(x, dt(x_dtype), weight, dt(w_dtype), out,
                                                                      dt(out_dtype), rstd, hidden, eps);
  LAUNCH_CHECK();
}

void rms_norm_backward(const void* d_out, DType d_out_dtype, const void* x, DType x_dtype, const void* weight,
                       DType w_dtype, const float* rstd, void* dx, DType dx_dtype, float* d_weight, size_t n,
                       size_t hidden, bool accumulate_dx, float* workspace, cudaStream_t stream) {
  if (n == 0) return;  // no rows: an empty grid is a launch error
  // dWeight first: dx may alias dOut (an in-place backward) and is written by the second kernel.
  if (d_weight != nullptr) {
    add_column_sums(RmsNormDWeightTerm{d_out, dt(d_out_dtype), x, dt(x_dtype), rstd, hidden}, n, hidden, d_weight,
                    workspace, stream);
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

/** Whether the tensor-core kernels run: bf16 / fp16 at head dim 64 or 128 with 16-byte aligned tensors, unless
 * BADAM_ATTENTION=simt (read at every call, so a process can switch) asks for the SIMT kernels. */
bool use_tensor_cores(DType dtype, const ref::AttentionDims& dims, std::initializer_list<const void*> tensors) {
  const char* choice = std::getenv("BADAM_ATTENTION");
  if (choice != nullptr && *choice != '\0' && std::string(choice) != "auto") {
    if (std::string(choice) == "simt") return false;
    throw std::invalid_argument(std::string("BADAM_ATTENTION must be simt, auto or unset, got '") + choice +
                                "': simt forces the fp32 SIMT attention kernels, auto picks tensor cores where they apply");
  }
  if (dtype != DType::BF16 && dtype != DType::F16) return false;
  if (dims.head_dim != 64 && dims.head_dim != 128) return false;
  for (const void* t : tensors) {
    if (reinterpret_cast<uintptr_t>(t) % 16 != 0) return false;  // the tiles are copied 16 bytes at a time
  }
  return true;
}

template <typename T, int D>
void attention_forward_tc(const void* q, const void* k, const void* v, void* out, float* lse, const ref::AttentionDims& dims,
                          cudaStream_t stream) {
  auto kernel = attention_forward_tc_kernel<T, D>;
  allow_shared(kernel, tc_forward_bytes(D));
  kernel<<<tc_grid(dims, dims.heads), kTcThreads, tc_forward_bytes(D), stream>>>(
      static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v), static_cast<T*>(out), lse, dims);
  LAUNCH_CHECK();
}

template <typename T, int D>
void attention_backward_tc(const void* q, const void* k, const void* v, const void* d_out, const float* lse,
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

void attention(const void* q, const void* k, const void* v, void* out, float* lse, DType dtype,
               const ref::AttentionDims& dims, cudaStream_t stream) {
  if (dims.batch <= 0 || dims.seq_len <= 0 || dims.heads <= 0) return;  // nothing to compute: no empty grid
  if (use_tensor_cores(dtype, dims, {q, k, v, out})) {
    const bool bf16 = dtype == DType::BF16;
    if (dims.head_dim == 64) {
      (bf16 ? attention_forward_tc<__nv_bfloat16, 64> : attention_forward_tc<__half, 64>)(q, k, v, out, lse, dims, stream);
    } else {
      (bf16 ? attention_forward_tc<__nv_bfloat16, 128> : attention_forward_tc<__half, 128>)(q, k, v, out, lse, dims, stream);
    }
    return;
  }
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
  if (dims.batch <= 0 || dims.seq_len <= 0 || dims.heads <= 0) return;  // nothing to compute: no empty grid
  const size_t D = static_cast<size_t>(dims.head_dim);
  const size_t rows = static_cast<size_t>(dims.batch) * dims.heads * dims.seq_len;
  attention_d_rows_kernel<<<static_cast<unsigned>((rows * 32 + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
      out, d_out, d_rows, dt(dtype), dims);
  LAUNCH_CHECK();

  if (use_tensor_cores(dtype, dims, {q, k, v, d_out, dq, dk, dv})) {
    const bool bf16 = dtype == DType::BF16;
    if (dims.head_dim == 64) {
      (bf16 ? attention_backward_tc<__nv_bfloat16, 64> : attention_backward_tc<__half, 64>)(q, k, v, d_out, lse, d_rows, dq,
                                                                                             dk, dv, dims, stream);
    } else {
      (bf16 ? attention_backward_tc<__nv_bfloat16, 128> : attention_backward_tc<__half, 128>)(q, k, v, d_out, lse, d_rows,
                                                                                               dq, dk, dv, dims, stream);
    }
    return;
  }

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

/** dBias's term of row r, column c: dOut. */
struct BiasTerm {
  const void* d_out;
  int d_out_dtype;
  size_t channels;
  __device__ float operator()(size_t r, size_t c) const { return load_f32(d_out, d_out_dtype, r * channels + c); }
};

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

void bias_backward(const void* d_out, DType d_out_dtype, float* d_bias, size_t n, size_t channels, float* workspace,
                   cudaStream_t stream) {
  add_column_sums(BiasTerm{d_out, dt(d_out_dtype), channels}, n / channels, channels, d_bias, workspace, stream);
}

size_t column_sum_workspace(size_t rows, size_t cols) { return column_chunks(rows) * cols; }

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
  if (rows == 0) return;  // no rows: an empty grid is a launch error
  cross_entropy_kernel<<<static_cast<unsigned>(rows), kRowThreads, 0, stream>>>(logits, dt(dtype), labels, losses, vocab,
                                                                                grad_scale);
  LAUNCH_CHECK();
}

void argmax_rows(const void* x, DType dtype, int32_t* out, size_t rows, size_t cols, cudaStream_t stream) {
  if (rows == 0) return;  // no rows: an empty grid is a launch error
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
