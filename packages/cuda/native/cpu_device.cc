#include <cstdlib>
#include <cstring>

#include "device.h"

namespace badam {
namespace {

class CpuDevice final : public Device {
 public:
  DeviceInfo info() const override {
    DeviceInfo i;
    i.kind = "cpu";
    i.name = "CPU reference";
    i.gemm_library = "reference";
    return i;
  }
  void* raw_alloc(size_t bytes) override { return std::aligned_alloc(256, (bytes + 255) / 256 * 256); }
  void raw_free(void* ptr) noexcept override { std::free(ptr); }
  void upload(void* dst, const void* host, size_t bytes) override { std::memcpy(dst, host, bytes); }
  void download(void* host, const void* src, size_t bytes) override { std::memcpy(host, src, bytes); }
  void copy(void* dst, const void* src, size_t bytes) override { std::memmove(dst, src, bytes); }
  void fill(void* dst, DType dtype, size_t n, float value) override {
    for (size_t i = 0; i < n; i++) store_from_f32(dst, dtype, i, value);
  }
  void synchronize() override {}

  void gemm(const void* a, const void* b, void* c, DType ab, DType cdt, int m, int n, int k, bool trans_a, bool trans_b,
            float alpha, float beta) override {
    ref::gemm(a, b, c, ab, cdt, m, n, k, trans_a, trans_b, alpha, beta);
  }
  void adamw(float* master, void* weight, DType weight_dtype, const void* grad, DType grad_dtype, float* m, float* v,
             size_t n, const ref::AdamWArgs& args) override {
    ref::adamw(master, weight, weight_dtype, grad, grad_dtype, m, v, n, args);
  }
  double sum_squares(const std::vector<TensorView>& tensors) override {
    double s = 0;
    for (const auto& t : tensors) s += ref::sum_squares(t.data, t.dtype, t.numel);
    return s;
  }
  void scale(void* x, DType dtype, size_t n, float factor) override { ref::scale(x, dtype, n, factor); }
  void accumulate(float* dst, const void* src, DType src_dtype, size_t n, float factor) override {
    ref::accumulate(dst, src, src_dtype, n, factor);
  }
  void cast(const void* src, DType src_dtype, void* dst, DType dst_dtype, size_t n) override {
    ref::cast(src, src_dtype, dst, dst_dtype, n);
  }
  void sparse_adam(float* param, void* weight, DType weight_dtype, const void* grad, DType grad_dtype,
                   const int32_t* indices, float* m, float* v, size_t k, const ref::SparseAdamArgs& args) override {
    ref::sparse_adam(param, weight, weight_dtype, grad, grad_dtype, indices, m, v, k, args);
  }
};

}  // namespace

std::unique_ptr<Device> make_cpu_device() { return std::make_unique<CpuDevice>(); }

#ifndef BADAM_WITH_CUDA
bool cuda_compiled() { return false; }
int cuda_device_count(std::string* reason) {
  if (reason) *reason = "@badam/cuda was built without CUDA (nvcc was not found at build time); install the CUDA toolkit and rebuild: pnpm --filter @badam/cuda build";
  return -1;
}
std::unique_ptr<Device> make_cuda_device(int) {
  std::string reason;
  cuda_device_count(&reason);
  throw std::runtime_error(reason);
}
#endif

}  // namespace badam
