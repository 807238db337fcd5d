// The fp32 SIMT attention kernels: any float dtype and head dim <= 128, the fallback of the tensor-core ones
// (attention.cu picks). q / k / v rows may be strided (column blocks of a fused projection). The per-element math is llama_math.h's, shared with the CPU reference.
#include <cuda_runtime.h>

#include <cstdint>

#include "attention_common.cuh"
#include "kernel_common.cuh"
#include "llama_math.h"

namespace badam::cuda_llama {

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
                               size_t stride, int head, int head_dim) {
  for (int e = threadIdx.x; e < kTile * head_dim; e += blockDim.x) {
    const int r = e / head_dim, i = e % head_dim, s = s0 + r;
    tile[r * ld + i] = s < seq_len
                           ? load_f32(src, dtype, (static_cast<size_t>(b) * seq_len + s) * stride + static_cast<size_t>(head) * head_dim + i)
                           : 0.0f;
  }
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
  const size_t out_stride = static_cast<size_t>(d.heads) * d.head_dim;  // out and dOut are packed

  load_head_tile(q_tile, D, q, dtype, b, q0, d.seq_len, ref::q_stride_of(d), h, D);
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
    load_head_tile(k_tile, ldk, k, dtype, b, k0, d.seq_len, ref::kv_stride_of(d), kvh, D);
    load_head_tile(v_tile, D, v, dtype, b, k0, d.seq_len, ref::kv_stride_of(d), kvh, D);
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
      if (i < D) store_f32(out, dtype, ref::head_index(d, out_stride, b, s, h, i), llama::attention_output(acc[rr][c], l[rr]));
    }
    if (lane == 0) lse[(static_cast<size_t>(b) * d.heads + h) * d.seq_len + s] = llama::softmax_lse(m[rr], l[rr]);
  }
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
  const size_t out_stride = static_cast<size_t>(d.heads) * d.head_dim;  // out and dOut are packed

  load_head_tile(q_tile, D, q, dtype, b, q0, d.seq_len, ref::q_stride_of(d), h, D);
  load_head_tile(do_tile, D, d_out, dtype, b, q0, d.seq_len, out_stride, h, D);
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
    load_head_tile(k_tile, ldk, k, dtype, b, k0, d.seq_len, ref::kv_stride_of(d), kvh, D);
    load_head_tile(v_tile, ldk, v, dtype, b, k0, d.seq_len, ref::kv_stride_of(d), kvh, D);
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
      if (i < D) store_f32(dq, dtype, ref::head_index(d, ref::q_stride_of(d), b, s, h, i), acc[rr][c]);
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
  const size_t out_stride = static_cast<size_t>(d.heads) * d.head_dim;  // out and dOut are packed
  constexpr int kKeysPerWarp = kTile / kWarps;  // 4

  load_head_tile(k_tile, D, k, dtype, b, k0, d.seq_len, ref::kv_stride_of(d), kvh, D);
  load_head_tile(v_tile, D, v, dtype, b, k0, d.seq_len, ref::kv_stride_of(d), kvh, D);
  float dk_acc[kKeysPerWarp][kDimsPerLane] = {}, dv_acc[kKeysPerWarp][kDimsPerLane] = {};

  // Keys at or past the row's length are masked for every query: their gradients stay 0.
  const int q_start = d.causal ? k0 : 0;  // queries before k0 see none of these keys
  for (int g = 0; k0 < length && g < group; g++) {
    const int h = kvh * group + g;
    for (int qs = q_start; qs < d.seq_len; qs += kTile) {
      __syncthreads();  // the previous query tile is consumed (and k, v are loaded)
      load_head_tile(q_tile, ldq, q, dtype, b, qs, d.seq_len, ref::q_stride_of(d), h, D);
      load_head_tile(do_tile, ldq, d_out, dtype, b, qs, d.seq_len, out_stride, h, D);
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
      const size_t a = ref::head_index(d, ref::kv_stride_of(d), b, key, kvh, i);
      store_f32(dk, dtype, a, dk_acc[kk][c]);
      store_f32(dv, dtype, a, dv_acc[kk][c]);
    }
  }
}

/** Launches `kernel` with `bytes` of dynamic shared memory, raising its limit past 48 KiB when needed. */

dim3 attention_grid(const ref::AttentionDims& d, int heads) {
  return dim3(static_cast<unsigned>((d.seq_len + kTile - 1) / kTile), static_cast<unsigned>(heads),
              static_cast<unsigned>(d.batch));
}

}  // namespace

size_t attention_simt_shared_bytes(int head_dim) {
  const size_t D = static_cast<size_t>(head_dim);
  return sizeof(float) * (2 * kTile * D + 2 * kTile * (D + 1) + 2 * kTile);  // the dk / dv kernel's, the largest
}

void attention_forward_simt(const void* q, const void* k, const void* v, void* out, float* lse, DType dtype,
                            const ref::AttentionDims& dims, cudaStream_t stream) {
  const size_t D = static_cast<size_t>(dims.head_dim);
  const size_t bytes = sizeof(float) * (kTile * D + kTile * (D + 1) + kTile * D);
  allow_shared(attention_forward_kernel, bytes);
  attention_forward_kernel<<<attention_grid(dims, dims.heads), kWarps * 32, bytes, stream>>>(q, k, v, out, lse, dt(dtype),
                                                                                             dims);
  LAUNCH_CHECK();
}

void attention_backward_simt(const void* q, const void* k, const void* v, const void* d_out, const float* lse,
                             const float* d_rows, void* dq, void* dk, void* dv, DType dtype,
                             const ref::AttentionDims& dims, cudaStream_t stream) {
  const size_t D = static_cast<size_t>(dims.head_dim);
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

}  // namespace badam::cuda_llama
