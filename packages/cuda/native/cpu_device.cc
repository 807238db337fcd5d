#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

#include "device.h"
#include "gemm.h"  // @badam/native's SGEMM (packages/native/native/gemm.h), compiled into this addon

namespace badam {
namespace {

// BADAM_CPU_GEMM=reference makes the CPU device's GEMMs the plain loop of ref::gemm (to rule the SGEMM in or
// out); unset or "native", they run @badam/native's blocked, multithreaded SGEMM.
bool reference_gemm_requested() {
  const char* env = std::getenv("BADAM_CPU_GEMM");
  if (env == nullptr || *env == '\0' || std::strcmp(env, "native") == 0) return false;
  if (std::strcmp(env, "reference") == 0) return true;
  throw std::invalid_argument(std::string("BADAM_CPU_GEMM must be \"native\" or \"reference\", got \"") + env +
                              "\"; unset it for the native SGEMM");
}

/** n elements of a float buffer as fp32: the buffer itself when it is fp32, else an exact copy in `holder`. */
const float* as_f32(const void* x, DType dtype, size_t n, std::unique_ptr<float[]>& holder) {
  if (dtype == DType::F32) return static_cast<const float*>(x);
  holder.reset(new float[n]);
  if (dtype == DType::BF16) {  // the common case, a loop the compiler vectorizes
    const auto* bits = static_cast<const uint16_t*>(x);
    for (size_t i = 0; i < n; i++) holder[i] = bf16_to_f32(bits[i]);
  } else {
    for (size_t i = 0; i < n; i++) holder[i] = load_as_f32(x, dtype, i);
  }
  return holder.get();
}

/**
 * c[at, at + n) = alpha * product + beta * c, rounded once to c's dtype; beta 0 never reads C (as ref::gemm),
 * so -0 stays -0 and stale NaNs in C do not leak.
 */
void scale_into(const float* product, void* c, DType cdt, size_t at, size_t n, float alpha, float beta) {
  if (cdt == DType::F32) {  // gradient accumulation (beta 1) mostly: one vectorizable pass
    float* c32 = static_cast<float*>(c) + at;
    if (beta == 0.0f) {
      for (size_t i = 0; i < n; i++) c32[i] = alpha * product[i];
    } else {
      for (size_t i = 0; i < n; i++) c32[i] = alpha * product[i] + beta * c32[i];
    }
    return;
  }
  if (cdt == DType::BF16) {  // activations and 16-bit gradients: round each result once
    auto* bits = static_cast<uint16_t*>(c) + at;
    for (size_t i = 0; i < n; i++) {
      float out = alpha * product[i];
      if (beta != 0.0f) out += beta * bf16_to_f32(bits[i]);
      bits[i] = f32_to_bf16(out);
    }
    return;
  }
  for (size_t i = 0; i < n; i++) {
    float out = alpha * product[i];
    if (beta != 0.0f) out += beta * load_as_f32(c, cdt, at + i);
    store_from_f32(c, cdt, at + i, out);
  }
}

class CpuDevice final : public Device {
 public:
  CpuDevice() : reference_gemm_(reference_gemm_requested()) {}

  DeviceInfo info() const override {
    DeviceInfo i;
    i.kind = "cpu";
    i.name = "CPU reference";
    i.gemm_library = reference_gemm_ ? "reference" : std::string("native sgemm ") + sgemm_kernel_name() + " x" +
                                                         std::to_string(sgemm_threads());
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

  // Same contract as ref::gemm (fp32 accumulation, C rounded once), in a different summation order: results
  // agree with it within fp32 rounding. 16-bit operands are widened to fp32 first (exactly).
  void gemm(const void* a, const void* b, void* c, DType ab, DType cdt, int m, int n, int k, bool trans_a, bool trans_b,
            float alpha, float beta, const ref::GemmLayout& ld) override {
    if (reference_gemm_) {
      ref::gemm(a, b, c, ab, cdt, m, n, k, trans_a, trans_b, alpha, beta, ld);
      return;
    }
    // Row-major op(A) [m, k] is stored [k, m] when transposed, op(B) [k, n] is stored [n, k]; a stored
    // operand of r rows spans (r - 1) * ld + its row length elements.
    const size_t a_span = trans_a ? static_cast<size_t>(k - 1) * ld.lda + m : static_cast<size_t>(m - 1) * ld.lda + k;
    const size_t b_span = trans_b ? static_cast<size_t>(n - 1) * ld.ldb + k : static_cast<size_t>(k - 1) * ld.ldb + n;
    std::unique_ptr<float[]> a_holder, b_holder, product_holder;
    const float* a32 = as_f32(a, ab, a_span, a_holder);
    const float* b32 = as_f32(b, ab, b_span, b_holder);
    const bool direct = cdt == DType::F32 && alpha == 1.0f && beta == 0.0f;
    float* product = static_cast<float*>(c);
    int ldp = ld.ldc;
    if (!direct) {
      product_holder.reset(new float[static_cast<size_t>(m) * n]);
      product = product_holder.get();
      ldp = n;
    }
    sgemm(m, n, k, a32, ld.lda, trans_a, b32, ld.ldb, trans_b, product, ldp);
    if (direct) return;
    for (int i = 0; i < m; i++) scale_into(product + static_cast<size_t>(i) * n, c, cdt, static_cast<size_t>(i) * ld.ldc, n, alpha, beta);
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
  void accumulate(void* dst, DType dst_dtype, const void* src, DType src_dtype, size_t n, float factor) override {
    ref::accumulate(dst, dst_dtype, src, src_dtype, n, factor);
  }
  void cast(const void* src, DType src_dtype, void* dst, DType dst_dtype, size_t n) override {
    ref::cast(src, src_dtype, dst, dst_dtype, n);
  }
  void sparse_adam(float* param, void* weight, DType weight_dtype, const void* grad, DType grad_dtype,
                   const int32_t* indices, float* m, float* v, size_t k, const ref::SparseAdamArgs& args) override {
    ref::sparse_adam(param, weight, weight_dtype, grad, grad_dtype, indices, m, v, k, args);
  }

  void embedding(const void* table, DType table_dtype, const int32_t* ids, void* out, DType out_dtype, size_t n,
                 size_t vocab, size_t hidden) override {
    ref::embedding(table, table_dtype, ids, out, out_dtype, n, vocab, hidden);
  }
  void embedding_backward(const void* d_out, DType d_out_dtype, const int32_t* ids, float* d_table, size_t n,
                          size_t vocab, size_t hidden) override {
    ref::embedding_backward(d_out, d_out_dtype, ids, d_table, n, vocab, hidden);
  }
  void rms_norm(const void* x, DType x_dtype, const void* weight, DType w_dtype, void* out, DType out_dtype, float* rstd,
                size_t n, size_t hidden, float eps) override {
    ref::rms_norm(x, x_dtype, weight, w_dtype, out, out_dtype, rstd, n, hidden, eps);
  }
  void add_rms_norm(const void* x, const void* delta, void* sum, DType dtype, const void* weight, DType w_dtype, void* out,
                    float* rstd, size_t n, size_t hidden, float eps) override {
    ref::add_rms_norm(x, delta, sum, dtype, weight, w_dtype, out, rstd, n, hidden, eps);
  }
  // The column sums' workspace is the GPU's; the reference adds rows directly.
  void rms_norm_backward(const void* d_out, DType d_out_dtype, const void* x, DType x_dtype, const void* weight,
                         DType w_dtype, const float* rstd, void* dx, DType dx_dtype, float* d_weight, size_t n,
                         size_t hidden, bool accumulate_dx, float*) override {
    ref::rms_norm_backward(d_out, d_out_dtype, x, x_dtype, weight, w_dtype, rstd, dx, dx_dtype, d_weight, n, hidden,
                           accumulate_dx);
  }
  void rope(void* x, DType dtype, const float* cos, const float* sin, size_t n, int seq_len, int heads, int head_dim,
            bool inverse, size_t row_stride) override {
    ref::rope(x, dtype, cos, sin, n, seq_len, heads, head_dim, inverse, row_stride);
  }
  void attention(const void* q, const void* k, const void* v, void* out, float* lse, DType dtype,
                 const ref::AttentionDims& dims) override {
    ref::attention(q, k, v, out, lse, dtype, dims);
  }
  // The split dk / dv partials are the tensor-core kernels'; the reference sums the group directly.
  void attention_backward(const void* q, const void* k, const void* v, const void* out, const void* d_out,
                          const float* lse, void* dq, void* dk, void* dv, float* d_rows, float*, DType dtype,
                          const ref::AttentionDims& dims) override {
    ref::attention_backward(q, k, v, out, d_out, lse, dq, dk, dv, d_rows, dtype, dims);
  }
  void swiglu(const void* gate_up, DType gate_up_dtype, void* out, DType out_dtype, size_t rows, size_t inter) override {
    ref::swiglu(gate_up, gate_up_dtype, out, out_dtype, rows, inter);
  }
  void swiglu_backward(const void* gate_up, DType gate_up_dtype, const void* d_out, DType d_out_dtype, void* d_gate_up,
                       DType d_gate_up_dtype, size_t rows, size_t inter) override {
    ref::swiglu_backward(gate_up, gate_up_dtype, d_out, d_out_dtype, d_gate_up, d_gate_up_dtype, rows, inter);
  }
  void add(const void* a, DType a_dtype, const void* b, DType b_dtype, void* out, DType out_dtype, size_t n) override {
    ref::add(a, a_dtype, b, b_dtype, out, out_dtype, n);
  }
  void add_bias(void* x, DType x_dtype, const void* bias, DType bias_dtype, size_t n, size_t channels) override {
    ref::add_bias(x, x_dtype, bias, bias_dtype, n, channels);
  }
  void bias_backward(const void* d_out, DType d_out_dtype, float* d_bias, size_t rows, size_t channels, size_t row_stride,
                     float*) override {
    ref::bias_backward(d_out, d_out_dtype, d_bias, rows, channels, row_stride);
  }
  void cross_entropy(void* logits, DType dtype, const int32_t* labels, float* losses, size_t rows, size_t vocab,
                     float grad_scale) override {
    ref::cross_entropy(logits, dtype, labels, losses, rows, vocab, grad_scale);
  }
  void argmax_rows(const void* x, DType dtype, int32_t* out, size_t rows, size_t cols) override {
    ref::argmax_rows(x, dtype, out, rows, cols);
  }
  double sum(const void* x, DType dtype, size_t n) override { return ref::sum(x, dtype, n); }

 private:
  const bool reference_gemm_;
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
