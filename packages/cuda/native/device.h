// A device runs BAdam's kernels on memory it owns. Two implementations share this interface: the CUDA
// device (cuda_device.cu, compiled only when nvcc is found) and the CPU device, which runs the reference
// kernels on host memory — the oracle in CI, and a working backend on any machine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dtype.h"
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
  std::string gemm_library;  // "cublas 130000" or "reference"
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
  virtual void synchronize() = 0;

  virtual void gemm(const void* a, const void* b, void* c, DType ab, DType cdt, int m, int n, int k, bool trans_a,
                    bool trans_b, float alpha, float beta) = 0;
  virtual void adamw(float* master, void* weight, DType weight_dtype, const void* grad, DType grad_dtype, float* m,
                     float* v, size_t n, const ref::AdamWArgs& args) = 0;
  virtual double sum_squares(const std::vector<TensorView>& tensors) = 0;
  virtual void scale(void* x, DType dtype, size_t n, float factor) = 0;
  virtual void accumulate(float* dst, const void* src, DType src_dtype, size_t n, float factor) = 0;
  virtual void cast(const void* src, DType src_dtype, void* dst, DType dst_dtype, size_t n) = 0;
  virtual void sparse_adam(float* param, void* weight, DType weight_dtype, const void* grad, DType grad_dtype,
                           const int32_t* indices, float* m, float* v, size_t k, const ref::SparseAdamArgs& args) = 0;
};

/** The CPU device: host memory and the reference kernels. */
std::unique_ptr<Device> make_cpu_device();

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
