// Attention and its backward on the CUDA device: the dispatcher between the tensor-core kernels
// (attention_tc.cu) and the fp32 SIMT ones (attention_simt.cu), and the D = rowsum(dOut * out) kernel both
// backward paths read.
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <stdexcept>
#include <string>

#include "attention_common.cuh"
#include "kernel_common.cuh"
#include "llama_kernels.h"
#include "llama_math.h"

namespace badam::cuda_llama {
namespace {

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

}  // namespace

void attention(const void* q, const void* k, const void* v, void* out, float* lse, DType dtype,
               const ref::AttentionDims& dims, cudaStream_t stream) {
  if (dims.batch <= 0 || dims.seq_len <= 0 || dims.heads <= 0) return;  // nothing to compute: no empty grid
  if (use_tensor_cores(dtype, dims, {q, k, v, out})) {
    attention_forward_tc(q, k, v, out, lse, dtype, dims, stream);
  } else {
    attention_forward_simt(q, k, v, out, lse, dtype, dims, stream);
  }
}

void attention_backward(const void* q, const void* k, const void* v, const void* out, const void* d_out,
                        const float* lse, void* dq, void* dk, void* dv, float* d_rows, DType dtype,
                        const ref::AttentionDims& dims, cudaStream_t stream) {
  if (dims.batch <= 0 || dims.seq_len <= 0 || dims.heads <= 0) return;  // nothing to compute: no empty grid
  const size_t rows = static_cast<size_t>(dims.batch) * dims.heads * dims.seq_len;
  attention_d_rows_kernel<<<static_cast<unsigned>((rows * 32 + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
      out, d_out, d_rows, dt(dtype), dims);
  LAUNCH_CHECK();
  if (use_tensor_cores(dtype, dims, {q, k, v, d_out, dq, dk, dv})) {
    attention_backward_tc(q, k, v, d_out, lse, d_rows, dq, dk, dv, dtype, dims, stream);
  } else {
    attention_backward_simt(q, k, v, d_out, lse, d_rows, dq, dk, dv, dtype, dims, stream);
  }
}

}  // namespace badam::cuda_llama
