// The CUDA kernels of RMSNorm, the residual add fused with it, and RMSNorm's backward (HF LlamaRMSNorm); the
// per-element math is llama_math.h's, shared with the CPU references (llama_reference.cc). Rows are tokens,
// one block per row; 16-bit rows whose width is a multiple of 8 are read and written 16 bytes at a time.
#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>

#include "column_sums.cuh"
#include "kernel_common.cuh"
#include "llama_kernels.h"
#include "llama_math.h"

namespace badam::cuda_llama {

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

// The same with 16-byte accesses: x, out of 16-bit dtype DT, hidden a multiple of 8, rows 16-byte aligned.
template <int DT>
__global__ void rms_norm_vec8_kernel(const void* x, const void* weight, int w_dtype, void* out, float* rstd, size_t hidden,
                                     float eps) {
  const size_t base = blockIdx.x * hidden;
  float ss = 0.0f;
  for (size_t c = threadIdx.x * 8; c < hidden; c += blockDim.x * 8) {
    float v[8];
    load8<DT>(x, base + c, v);
#pragma unroll
    for (int j = 0; j < 8; j++) ss += v[j] * v[j];
  }
  const float r = llama::rms_rstd(block_sum(ss), static_cast<int>(hidden), eps);
  if (threadIdx.x == 0) rstd[blockIdx.x] = r;
  for (size_t c = threadIdx.x * 8; c < hidden; c += blockDim.x * 8) {
    float v[8];
    load8<DT>(x, base + c, v);
#pragma unroll
    for (int j = 0; j < 8; j++) v[j] = llama::rms_norm_value(v[j], r, load_f32(weight, w_dtype, c + j), DT);
    store8<DT>(out, base + c, v);
  }
}

// sum = x + delta (rounded), out = rms_norm(sum), all [n, hidden] of 16-bit dtype DT, hidden a multiple of 8,
// 16-byte aligned; one block per row. A thread reads back only the sums it wrote (sum may alias x).
template <int DT>
__global__ void add_rms_norm_vec8_kernel(const void* x, const void* delta, void* sum, const void* weight, int w_dtype,
                                         void* out, float* rstd, size_t hidden, float eps) {
  const size_t base = blockIdx.x * hidden;
  float ss = 0.0f;
  for (size_t c = threadIdx.x * 8; c < hidden; c += blockDim.x * 8) {
    float a[8], b[8];
    load8<DT>(x, base + c, a);
    load8<DT>(delta, base + c, b);
#pragma unroll
    for (int j = 0; j < 8; j++) {
      a[j] = round_to_dtype(DT, a[j] + b[j]);
      ss += a[j] * a[j];
    }
    store8<DT>(sum, base + c, a);
  }
  const float r = llama::rms_rstd(block_sum(ss), static_cast<int>(hidden), eps);
  if (threadIdx.x == 0) rstd[blockIdx.x] = r;
  for (size_t c = threadIdx.x * 8; c < hidden; c += blockDim.x * 8) {
    float v[8];
    load8<DT>(sum, base + c, v);
#pragma unroll
    for (int j = 0; j < 8; j++) v[j] = llama::rms_norm_value(v[j], r, load_f32(weight, w_dtype, c + j), DT);
    store8<DT>(out, base + c, v);
  }
}

// The same for any dtype, one element at a time.
__global__ void add_rms_norm_kernel(const void* x, const void* delta, void* sum, int dtype, const void* weight, int w_dtype,
                                    void* out, float* rstd, size_t hidden, float eps) {
  const size_t base = blockIdx.x * hidden;
  float ss = 0.0f;
  for (size_t c = threadIdx.x; c < hidden; c += blockDim.x) {
    const float v = round_to_dtype(dtype, load_f32(x, dtype, base + c) + load_f32(delta, dtype, base + c));
    store_f32(sum, dtype, base + c, v);
    ss += v * v;
  }
  const float r = llama::rms_rstd(block_sum(ss), static_cast<int>(hidden), eps);
  if (threadIdx.x == 0) rstd[blockIdx.x] = r;
  for (size_t c = threadIdx.x; c < hidden; c += blockDim.x) {
    store_f32(out, dtype, base + c,
              llama::rms_norm_value(load_f32(sum, dtype, base + c), r, load_f32(weight, w_dtype, c), dtype));
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

/** Whether a row kernel can take 8 elements of one 16-bit dtype at a time. */
static bool vec8_rows(DType dtype, size_t hidden, std::initializer_list<const void*> rows) {
  return (dtype == DType::BF16 || dtype == DType::F16) && hidden % 8 == 0 && all_aligned16(rows);
}

void rms_norm(const void* x, DType x_dtype, const void* weight, DType w_dtype, void* out, DType out_dtype, float* rstd,
              size_t n, size_t hidden, float eps, cudaStream_t stream) {
  if (n == 0) return;  // no rows: an empty grid is a launch error
  const unsigned rows = static_cast<unsigned>(n);
  if (x_dtype == out_dtype && vec8_rows(x_dtype, hidden, {x, out})) {
    auto kernel = x_dtype == DType::BF16 ? rms_norm_vec8_kernel<1> : rms_norm_vec8_kernel<2>;
    kernel<<<rows, kThreads, 0, stream>>>(x, weight, dt(w_dtype), out, rstd, hidden, eps);
  } else {
    rms_norm_kernel<<<rows, kThreads, 0, stream>>>(x, dt(x_dtype), weight, dt(w_dtype), out, dt(out_dtype), rstd, hidden,
                                                   eps);
  }
  LAUNCH_CHECK();
}

void add_rms_norm(const void* x, const void* delta, void* sum, DType dtype, const void* weight, DType w_dtype, void* out,
                  float* rstd, size_t n, size_t hidden, float eps, cudaStream_t stream) {
  if (n == 0) return;  // no rows: an empty grid is a launch error
  const unsigned rows = static_cast<unsigned>(n);
  if (vec8_rows(dtype, hidden, {x, delta, sum, out})) {
    auto kernel = dtype == DType::BF16 ? add_rms_norm_vec8_kernel<1> : add_rms_norm_vec8_kernel<2>;
    kernel<<<rows, kThreads, 0, stream>>>(x, delta, sum, weight, dt(w_dtype), out, rstd, hidden, eps);
  } else {
    add_rms_norm_kernel<<<rows, kThreads, 0, stream>>>(x, delta, sum, dt(dtype), weight, dt(w_dtype), out, rstd, hidden, eps);
  }
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

}  // namespace badam::cuda_llama
