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
    const size_t a = ref::head_index(d, static_cast<size_t>(d.heads) * d.head_dim, b, s, h, i);
    acc += load_f32(d_out, dtype, a) * load_f32(out, dtype, a);
  }
  acc = warp_sum(acc);
  if (lane == 0) d_rows[row] = acc;
}


/** The device's opt-in shared memory per block (cudaDevAttrMaxSharedMemoryPerBlockOptin). */
size_t shared_limit() {
  int device = 0, bytes = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  CUDA_CHECK(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  return static_cast<size_t>(bytes);
}

/** Which kernels run a call: the tensor-core ones with a walked tile of `key_tile` rows, or (0) the SIMT ones. */
struct AttentionPath {
  int key_tile;
};

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

/**
 * The kernels for a call. Tensor cores for bf16 / fp16 at head dim 64 or 128 with 16-byte aligned rows, with
 * the largest walked tile the device's shared memory holds (64 keys, or 32 on 99 KiB cards); the SIMT kernels
 * otherwise, or where BADAM_ATTENTION=simt asks (read at every call, so a process can switch). BADAM_ATTENTION
 * =tc32 takes the 32-key tiles even where 64 fit (the 99 KiB cards' kernels, for checking them on any GPU).
 * Throws when not even the SIMT kernels fit, naming the bytes.
 */
AttentionPath choose_path(DType dtype, const ref::AttentionDims& dims, std::initializer_list<const void*> tensors) {
  const char* env = std::getenv("BADAM_ATTENTION");
  const std::string choice = env == nullptr || *env == '\0' ? "auto" : env;
  if (choice != "auto" && choice != "simt" && choice != "tc32") {
    throw std::invalid_argument("BADAM_ATTENTION must be simt, tc32, auto or unset, got '" + choice +
                                "': simt forces the fp32 SIMT attention kernels, tc32 the tensor-core ones with 32-key "
                                "tiles, auto picks by dtype, head dim and the device's shared memory");
  }
  const size_t limit = shared_limit();
  bool tensor_cores = choice != "simt" && (dtype == DType::BF16 || dtype == DType::F16) &&
                      (dims.head_dim == 64 || dims.head_dim == 128) && ref::q_stride_of(dims) % 8 == 0 &&
                      ref::kv_stride_of(dims) % 8 == 0;
  for (const void* t : tensors) tensor_cores = tensor_cores && aligned16(t);  // tiles are copied 16 bytes at a time
  if (tensor_cores) {
    int key_tile = attention_tc_key_tile(dims.head_dim, limit);  // 64, or 32 where 64 does not fit, or 0
    if (choice == "tc32" && key_tile == 64) key_tile = 32;
    if (key_tile > 0) return AttentionPath{key_tile};
  }
  const size_t simt = attention_simt_shared_bytes(dims.head_dim);
  if (simt > limit) {
    throw std::runtime_error("attention: head dim " + std::to_string(dims.head_dim) + " needs " + std::to_string(simt) +
                             " bytes of shared memory per block on the SIMT kernels, and this device allows " +
                             std::to_string(limit));
  }
  return AttentionPath{0};
}

}  // namespace

void attention(const void* q, const void* k, const void* v, void* out, float* lse, DType dtype,
               const ref::AttentionDims& dims, cudaStream_t stream) {
  if (dims.batch <= 0 || dims.seq_len <= 0 || dims.heads <= 0) return;  // nothing to compute: no empty grid
  const AttentionPath path = choose_path(dtype, dims, {q, k, v, out});
  if (path.key_tile > 0) {
    attention_forward_tc(q, k, v, out, lse, dtype, path.key_tile, dims, stream);
  } else {
    attention_forward_simt(q, k, v, out, lse, dtype, dims, stream);
  }
}

void attention_backward(const void* q, const void* k, const void* v, const void* out, const void* d_out,
                        const float* lse, void* dq, void* dk, void* dv, float* d_rows, float* partials, DType dtype,
                        const ref::AttentionDims& dims, cudaStream_t stream) {
  if (dims.batch <= 0 || dims.seq_len <= 0 || dims.heads <= 0) return;  // nothing to compute: no empty grid
  const size_t rows = static_cast<size_t>(dims.batch) * dims.heads * dims.seq_len;
  attention_d_rows_kernel<<<static_cast<unsigned>((rows * 32 + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
      out, d_out, d_rows, dt(dtype), dims);
  LAUNCH_CHECK();
  const AttentionPath path = choose_path(dtype, dims, {q, k, v, d_out, dq, dk, dv});
  if (path.key_tile > 0) {
    attention_backward_tc(q, k, v, d_out, lse, d_rows, dq, dk, dv, partials, dtype, path.key_tile, dims, stream);
  } else {
    attention_backward_simt(q, k, v, d_out, lse, d_rows, dq, dk, dv, dtype, dims, stream);
  }
}

}  // namespace badam::cuda_llama
