// The CUDA kernels of the elementwise Llama ops: RoPE, SwiGLU, the residual add and biases; the per-element
// math is llama_math.h's, shared with the CPU references (llama_reference.cc). 16-bit operands of one dtype,
// 16-byte aligned, are read and written 8 elements (16 bytes) at a time.
#include <cuda_runtime.h>

#include <cstdint>

#include "column_sums.cuh"
#include "kernel_common.cuh"
#include "llama_kernels.h"
#include "llama_math.h"

namespace badam::cuda_llama {
namespace {

// --- rope ----------------------------------------------------------------------------------------------------

// The first `heads` heads of each of n rows of x [n, row_stride], in place (q and k of a fused projection in
// one pass); cos / sin [max_pos, head_dim / 2]; one thread per rotated pair.
__global__ void rope_kernel(void* x, int dtype, const float* cos, const float* sin, size_t n, int seq_len, int heads,
                            int head_dim, bool inverse, size_t row_stride) {
  const int half = head_dim / 2;
  GRID_STRIDE(p, n * heads * half) {
    const size_t i = p % half;
    const size_t token_head = p / half;  // token * heads + head
    const size_t token = token_head / heads, head = token_head % heads;
    const size_t pos = token % seq_len;
    const size_t a = token * row_stride + head * head_dim + i;
    float x1 = load_f32(x, dtype, a), x2 = load_f32(x, dtype, a + half);
    llama::rope_rotate(x1, x2, cos[pos * half + i], sin[pos * half + i], inverse);
    store_f32(x, dtype, a, x1);
    store_f32(x, dtype, a + half, x2);
  }
}

// --- SwiGLU ------------------------------------------------------------------------------------------------

// out [rows, inter] = silu(gate) * up from gate_up [rows, 2 * inter] (gate, then up, in each row).
__global__ void swiglu_kernel(const void* gate_up, int gu_dtype, void* out, int out_dtype, size_t rows, size_t inter) {
  GRID_STRIDE(i, rows * inter) {
    const size_t g = (i / inter) * 2 * inter + i % inter;
    store_f32(out, out_dtype, i, llama::swiglu_value(load_f32(gate_up, gu_dtype, g), load_f32(gate_up, gu_dtype, g + inter)));
  }
}

// The same 8 elements at a time: one 16-bit dtype DT, inter a multiple of 8, 16-byte aligned.
template <int DT>
__global__ void swiglu_vec8_kernel(const void* gate_up, void* out, size_t rows, size_t inter) {
  GRID_STRIDE(v, rows * inter / 8) {
    const size_t i = v * 8, g = (i / inter) * 2 * inter + i % inter;
    float gate[8], up[8];
    load8<DT>(gate_up, g, gate);
    load8<DT>(gate_up, g + inter, up);
#pragma unroll
    for (int j = 0; j < 8; j++) gate[j] = llama::swiglu_value(gate[j], up[j]);
    store8<DT>(out, i, gate);
  }
}

// d_gate_up [rows, 2 * inter] from gate_up and d_out [rows, inter]; d_gate_up may be gate_up (a thread reads
// its gate and up before it writes their gradients).
__global__ void swiglu_backward_kernel(const void* gate_up, int gu_dtype, const void* d_out, int d_out_dtype, void* d_gate_up,
                                       int d_gu_dtype, size_t rows, size_t inter) {
  GRID_STRIDE(i, rows * inter) {
    const size_t g = (i / inter) * 2 * inter + i % inter;
    const float gate = load_f32(gate_up, gu_dtype, g), up = load_f32(gate_up, gu_dtype, g + inter);
    const float d = load_f32(d_out, d_out_dtype, i);
    store_f32(d_gate_up, d_gu_dtype, g, llama::swiglu_d_gate(gate, up, d));
    store_f32(d_gate_up, d_gu_dtype, g + inter, llama::swiglu_d_up(gate, d));
  }
}

template <int DT>
__global__ void swiglu_backward_vec8_kernel(const void* gate_up, const void* d_out, void* d_gate_up, size_t rows,
                                            size_t inter) {
  GRID_STRIDE(v, rows * inter / 8) {
    const size_t i = v * 8, g = (i / inter) * 2 * inter + i % inter;
    float gate[8], up[8], d[8], d_gate[8];
    load8<DT>(gate_up, g, gate);
    load8<DT>(gate_up, g + inter, up);
    load8<DT>(d_out, i, d);
#pragma unroll
    for (int j = 0; j < 8; j++) {
      d_gate[j] = llama::swiglu_d_gate(gate[j], up[j], d[j]);
      up[j] = llama::swiglu_d_up(gate[j], d[j]);
    }
    store8<DT>(d_gate_up, g, d_gate);
    store8<DT>(d_gate_up, g + inter, up);
  }
}

// --- add, bias -----------------------------------------------------------------------------------------------

// out = a + b [n]
__global__ void add_kernel(const void* a, int a_dtype, const void* b, int b_dtype, void* out, int out_dtype, size_t n) {
  GRID_STRIDE(i, n) store_f32(out, out_dtype, i, load_f32(a, a_dtype, i) + load_f32(b, b_dtype, i));
}

// The same 8 elements at a time (one 16-bit dtype, n a multiple of 8, 16-byte aligned).
template <int DT>
__global__ void add_vec8_kernel(const void* a, const void* b, void* out, size_t n) {
  GRID_STRIDE(v, n / 8) {
    float x[8], y[8];
    load8<DT>(a, v * 8, x);
    load8<DT>(b, v * 8, y);
#pragma unroll
    for (int j = 0; j < 8; j++) x[j] += y[j];
    store8<DT>(out, v * 8, x);
  }
}

// x [n / channels, channels] += bias [channels]
__global__ void add_bias_kernel(void* x, int x_dtype, const void* bias, int bias_dtype, size_t n, size_t channels) {
  GRID_STRIDE(i, n) store_f32(x, x_dtype, i, load_f32(x, x_dtype, i) + load_f32(bias, bias_dtype, i % channels));
}

/** dBias's term of row r, column c: dOut (rows of `row_stride` elements). */
struct BiasTerm {
  const void* d_out;
  int d_out_dtype;
  size_t row_stride;
  __device__ float operator()(size_t r, size_t c) const { return load_f32(d_out, d_out_dtype, r * row_stride + c); }
};

/** Whether 16-bit operands of one dtype can go 8 elements at a time over rows of `width` elements. */
bool vec8(DType dtype, size_t width, std::initializer_list<const void*> pointers) {
  return (dtype == DType::BF16 || dtype == DType::F16) && width % 8 == 0 && all_aligned16(pointers);
}

}  // namespace

void rope(void* x, DType dtype, const float* cos, const float* sin, size_t n, int seq_len, int heads, int head_dim,
          bool inverse, size_t row_stride, cudaStream_t stream) {
  rope_kernel<<<blocks_for(n * heads * (head_dim / 2)), kThreads, 0, stream>>>(x, dt(dtype), cos, sin, n, seq_len, heads,
                                                                              head_dim, inverse, row_stride);
  LAUNCH_CHECK();
}

void swiglu(const void* gate_up, DType gate_up_dtype, void* out, DType out_dtype, size_t rows, size_t inter,
            cudaStream_t stream) {
  if (gate_up_dtype == out_dtype && vec8(out_dtype, inter, {gate_up, out})) {
    auto kernel = out_dtype == DType::BF16 ? swiglu_vec8_kernel<1> : swiglu_vec8_kernel<2>;
    kernel<<<blocks_for(rows * inter / 8), kThreads, 0, stream>>>(gate_up, out, rows, inter);
  } else {
    swiglu_kernel<<<blocks_for(rows * inter), kThreads, 0, stream>>>(gate_up, dt(gate_up_dtype), out, dt(out_dtype), rows,
                                                                     inter);
  }
  LAUNCH_CHECK();
}

void swiglu_backward(const void* gate_up, DType gate_up_dtype, const void* d_out, DType d_out_dtype, void* d_gate_up,
                     DType d_gate_up_dtype, size_t rows, size_t inter, cudaStream_t stream) {
  if (gate_up_dtype == d_out_dtype && gate_up_dtype == d_gate_up_dtype &&
      vec8(gate_up_dtype, inter, {gate_up, d_out, d_gate_up})) {
    auto kernel = gate_up_dtype == DType::BF16 ? swiglu_backward_vec8_kernel<1> : swiglu_backward_vec8_kernel<2>;
    kernel<<<blocks_for(rows * inter / 8), kThreads, 0, stream>>>(gate_up, d_out, d_gate_up, rows, inter);
  } else {
    swiglu_backward_kernel<<<blocks_for(rows * inter), kThreads, 0, stream>>>(
        gate_up, dt(gate_up_dtype), d_out, dt(d_out_dtype), d_gate_up, dt(d_gate_up_dtype), rows, inter);
  }
  LAUNCH_CHECK();
}

void add(const void* a, DType a_dtype, const void* b, DType b_dtype, void* out, DType out_dtype, size_t n,
         cudaStream_t stream) {
  if (a_dtype == out_dtype && b_dtype == out_dtype && vec8(out_dtype, n, {a, b, out})) {
    auto kernel = out_dtype == DType::BF16 ? add_vec8_kernel<1> : add_vec8_kernel<2>;
    kernel<<<blocks_for(n / 8), kThreads, 0, stream>>>(a, b, out, n);
  } else {
    add_kernel<<<blocks_for(n), kThreads, 0, stream>>>(a, dt(a_dtype), b, dt(b_dtype), out, dt(out_dtype), n);
  }
  LAUNCH_CHECK();
}

void add_bias(void* x, DType x_dtype, const void* bias, DType bias_dtype, size_t n, size_t channels, cudaStream_t stream) {
  add_bias_kernel<<<blocks_for(n), kThreads, 0, stream>>>(x, dt(x_dtype), bias, dt(bias_dtype), n, channels);
  LAUNCH_CHECK();
}

void bias_backward(const void* d_out, DType d_out_dtype, float* d_bias, size_t rows, size_t channels, size_t row_stride,
                   float* workspace, cudaStream_t stream) {
  add_column_sums(BiasTerm{d_out, dt(d_out_dtype), row_stride}, rows, channels, d_bias, workspace, stream);
}

}  // namespace badam::cuda_llama
