// A device runs BAdam's kernels on memory it owns. Three implementations share this interface: the CUDA
// device (cuda_device.cu, compiled only when nvcc is found); the CPU device, which runs the reference
// kernels on host memory — the oracle in CI — with GEMMs by @badam/native's SGEMM (BADAM_CPU_GEMM=reference:
// the reference loop); and the CPU engine (cpu_engine/), the fast CPU implementation checked against it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dtype.h"
#include "llama_reference.h"
#include "reference.h"

namespace badam {

/** One operand of a multi-tensor reduction. */
struct TensorView {
  const void* data;
  DType dtype;
  size_t numel;
};

struct DeviceInfo {
  std::string kind;   // "cuda" or "cpu"
  std::string name;   // e.g. "NVIDIA H100 80GB HBM3"
  int compute_major = 0, compute_minor = 0;
  size_t total_memory = 0;
  int multiprocessors = 0;
  std::string gemm_library;  // "cublas 130000"; CPU: "native sgemm avx512 x2" (kernel, threads) or "reference"
};

class Device {
 public:
  virtual ~Device() = default;
  virtual DeviceInfo info() const = 0;

  virtual void* raw_alloc(size_t bytes) = 0;  // nullptr when out of memory
  virtual void raw_free(void* ptr) noexcept = 0;  // never throws: called from destructors
  virtual void upload(void* dst, const void* host, size_t bytes) = 0;
  virtual void download(void* host, const void* src, size_t bytes) = 0;
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;
  virtual void fill(void* dst, DType dtype, size_t n, float value) = 0;
  /**
   * dst[i] = mean + std * normal_sample(seed, i) (random_normal.h), rounded to dtype. The default draws on the
   * host in chunks and uploads them; a device may override it with the same samples made faster.
   */
  virtual void fill_normal(void* dst, DType dtype, size_t n, float mean, float std, uint64_t seed);
  virtual void synchronize() = 0;
  /** The CUDA stream every op of the device runs on (a cudaStream_t); nullptr for a device without one. */
  virtual void* native_stream() { return nullptr; }

  virtual void gemm(const void* a, const void* b, void* c, DType ab, DType cdt, int m, int n, int k, bool trans_a,
                    bool trans_b, float alpha, float beta, const ref::GemmLayout& ld) = 0;
  /** Bytes of device memory the GEMM library wants as its workspace (0: none); the context provides them. */
  virtual size_t gemm_workspace_bytes() const { return 0; }
  /** The workspace (from the context's allocator), or null to stop using it. */
  virtual void set_gemm_workspace(void* workspace, size_t bytes) {
    (void)workspace;
    (void)bytes;
  }
  virtual void adamw(float* master, void* weight, DType weight_dtype, const void* grad, DType grad_dtype, float* m,
                     float* v, size_t n, const ref::AdamWArgs& args) = 0;
  virtual double sum_squares(const std::vector<TensorView>& tensors) = 0;
  virtual void scale(void* x, DType dtype, size_t n, float factor) = 0;
  virtual void accumulate(void* dst, DType dst_dtype, const void* src, DType src_dtype, size_t n, float factor) = 0;
  virtual void cast(const void* src, DType src_dtype, void* dst, DType dst_dtype, size_t n) = 0;
  virtual void sparse_adam(float* param, void* weight, DType weight_dtype, const void* grad, DType grad_dtype,
                           const int32_t* indices, float* m, float* v, size_t k, const ref::SparseAdamArgs& args) = 0;

  // The Llama ops; shapes and semantics in llama_reference.h. Device pointers throughout.
  virtual void embedding(const void* table, DType table_dtype, const int32_t* ids, void* out, DType out_dtype, size_t n,
                         size_t vocab, size_t hidden) = 0;
  virtual void embedding_backward(const void* d_out, DType d_out_dtype, const int32_t* ids, float* d_table, size_t n,
                                  size_t vocab, size_t hidden) = 0;
  virtual void rms_norm(const void* x, DType x_dtype, const void* weight, DType w_dtype, void* out, DType out_dtype,
                        float* rstd, size_t n, size_t hidden, float eps) = 0;
  virtual void add_rms_norm(const void* x, const void* delta, void* sum, DType dtype, const void* weight, DType w_dtype,
                            void* out, float* rstd, size_t n, size_t hidden, float eps) = 0;
  /** `workspace`: ref::column_sum_workspace(n, hidden) floats when d_weight is given (the GPU's column sums). */
  virtual void rms_norm_backward(const void* d_out, DType d_out_dtype, const void* x, DType x_dtype, const void* weight,
                                 DType w_dtype, const float* rstd, void* dx, DType dx_dtype, float* d_weight, size_t n,
                                 size_t hidden, bool accumulate_dx, float* workspace) = 0;
  virtual void rope(void* x, DType dtype, const float* cos, const float* sin, size_t n, int seq_len, int heads,
                    int head_dim, bool inverse, size_t row_stride) = 0;
  virtual void attention(const void* q, const void* k, const void* v, void* out, float* lse, DType dtype,
                         const ref::AttentionDims& dims) = 0;
  /**
   * `d_rows` is an fp32 workspace of batch * heads * seq_len elements (D = rowsum(dOut * out)), `partials` one
   * of ref::attention_backward_partial_floats(dims, dtype) elements (null when that is 0).
   */
  virtual void attention_backward(const void* q, const void* k, const void* v, const void* out, const void* d_out,
                                  const float* lse, void* dq, void* dk, void* dv, float* d_rows, float* partials,
                                  DType dtype, const ref::AttentionDims& dims) = 0;
  virtual void swiglu(const void* gate_up, DType gate_up_dtype, void* out, DType out_dtype, size_t rows,
                      size_t inter) = 0;
  virtual void swiglu_backward(const void* gate_up, DType gate_up_dtype, const void* d_out, DType d_out_dtype,
                               void* d_gate_up, DType d_gate_up_dtype, size_t rows, size_t inter) = 0;
  virtual void add(const void* a, DType a_dtype, const void* b, DType b_dtype, void* out, DType out_dtype, size_t n) = 0;
  virtual void add_bias(void* x, DType x_dtype, const void* bias, DType bias_dtype, size_t n, size_t channels) = 0;
  /** `workspace`: ref::column_sum_workspace(rows, channels) floats (the GPU's column sums). */
  virtual void bias_backward(const void* d_out, DType d_out_dtype, float* d_bias, size_t rows, size_t channels,
                             size_t row_stride, float* workspace) = 0;
  virtual void cross_entropy(void* logits, DType dtype, const int32_t* labels, float* losses, size_t rows, size_t vocab,
                             float grad_scale) = 0;
  virtual void argmax_rows(const void* x, DType dtype, int32_t* out, size_t rows, size_t cols) = 0;
  virtual double sum(const void* x, DType dtype, size_t n) = 0;
};

/** The CPU device: host memory and the reference kernels. */
std::unique_ptr<Device> make_cpu_device();

/**
 * The CPU engine (cpu_engine/): host memory, tiled multithreaded kernels on one thread pool, AVX-512 and
 * AVX512_BF16 GEMMs where the CPU has them. `instruction_set` is "auto" (the best this CPU runs) or a lower
 * level ("generic", "avx2", "avx512", "avx512-bf16"); throws std::invalid_argument for a level the CPU lacks.
 */
std::unique_ptr<Device> make_cpu_engine_device(const std::string& instruction_set);

/** Whether this build has the CUDA device compiled in. */
bool cuda_compiled();

/**
 * The CUDA device `ordinal`. Throws, saying what is missing, when the build has no CUDA, no driver or GPU
 * is found, or cuBLAS cannot be loaded.
 */
std::unique_ptr<Device> make_cuda_device(int ordinal);

/** Number of CUDA devices, or -1 with `reason` set when CUDA cannot be used here. */
int cuda_device_count(std::string* reason);

}  // namespace badam
