// The CUDA kernels of the embedding, cross-entropy, argmax and sum ops; the per-element math is llama_math.h's,
// shared with the CPU references (llama_reference.cc). Tokens are rows: token n = b * seq_len + s.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernel_common.cuh"
#include "llama_kernels.h"
#include "llama_math.h"

namespace badam::cuda_llama {

// --- embedding ---------------------------------------------------------------------------------------------
namespace {

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
