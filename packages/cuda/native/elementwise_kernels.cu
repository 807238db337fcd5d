// The CUDA kernels of the elementwise Llama ops: RoPE, SwiGLU, the residual add and biases; the per-element
// math is llama_math.h's, shared with the CPU references (llama_reference.cc).
#include <cuda_runtime.h>

#include <cstdint>

#include "column_sums.cuh"
#include "kernel_common.cuh"
#include "llama_kernels.h"
#include "llama_math.h"

namespace badam::cuda_llama {

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

}  // namespace badam::cuda_llama
