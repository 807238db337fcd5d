// The CUDA kernels of RMSNorm and its backward (HF LlamaRMSNorm); the per-element math is llama_math.h's,
// shared with the CPU references (llama_reference.cc). Rows are tokens, one block per row.
#include <cuda_runtime.h>

#include <cstdint>

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

}  // namespace badam::cuda_llama
