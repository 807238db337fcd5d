// The CPU engine: the third implementation of Device, for training on a CPU as fast as it goes. Host memory
// like the CPU reference device, but every op is a tiled, multithreaded kernel on one thread pool (GEMMs
// included), vectorised with AVX-512 where the CPU has it, and bf16 GEMMs multiply bf16 pairs with
// vdpbf16ps where the CPU has AVX512_BF16. The reference device stays the simple oracle: tests check every
// engine op against it (test/cpu-engine.test.ts), on each instruction set this CPU runs.
#include "../device.h"
#include "../random_normal.h"

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "engine_gemm.h"
#include "isa.h"
#include "kernels.h"
#include "thread_pool.h"

namespace badam {
namespace {

class CpuEngineDevice final : public Device {
 public:
  explicit CpuEngineDevice(engine::Isa isa)
      : isa_(isa), k_(isa >= engine::Isa::Avx512 ? engine::avx512_kernels() : engine::generic_kernels()) {}

  DeviceInfo info() const override {
    DeviceInfo i;
    i.kind = "cpu";
    i.name = std::string("CPU engine ") + engine::isa_name(isa_);
    i.multiprocessors = engine::pool_threads();
    i.gemm_library = std::string("engine ") + engine::gemm_kernel_name(isa_, DType::BF16) + " / " +
                     engine::gemm_kernel_name(isa_, DType::F32) + " x" + std::to_string(engine::pool_threads());
    return i;
  }
  void* raw_alloc(size_t bytes) override { return std::aligned_alloc(256, (bytes + 255) / 256 * 256); }
  void raw_free(void* ptr) noexcept override { std::free(ptr); }
  void upload(void* dst, const void* host, size_t bytes) override { std::memcpy(dst, host, bytes); }
  void download(void* host, const void* src, size_t bytes) override { std::memcpy(host, src, bytes); }
  void copy(void* dst, const void* src, size_t bytes) override { std::memmove(dst, src, bytes); }
  void fill(void* dst, DType dtype, size_t n, float value) override { k_.fill(dst, dtype, n, value); }
  // The base class's samples (random_normal.h), drawn on all threads.
  void fill_normal(void* dst, DType dtype, size_t n, float mean, float std, uint64_t seed) override {
    engine::parallel_range(static_cast<int64_t>(n), 4096, [&](int64_t begin, int64_t end) {
      std::vector<float> values(static_cast<size_t>(end - begin));
      normal_samples(seed, static_cast<uint64_t>(begin), static_cast<uint64_t>(end), mean, std, values.data());
      k_.cast(values.data(), DType::F32, static_cast<char*>(dst) + static_cast<size_t>(begin) * dtype_size(dtype), dtype,
              values.size());
    });
  }
  void synchronize() override {}

  void gemm(const void* a, const void* b, void* c, DType ab, DType cdt, int m, int n, int k, bool trans_a, bool trans_b,
            float alpha, float beta, const ref::GemmLayout& ld) override {
    engine::gemm(isa_, a, b, c, ab, cdt, m, n, k, trans_a, trans_b, alpha, beta, ld);
  }
  void adamw(float* master, void* weight, DType weight_dtype, const void* grad, DType grad_dtype, float* m, float* v,
             size_t n, const ref::AdamWArgs& args) override {
    k_.adamw(master, weight, weight_dtype, grad, grad_dtype, m, v, n, args);
  }
  double sum_squares(const std::vector<TensorView>& tensors) override {
    double s = 0;
    for (const auto& t : tensors) s += k_.sum_squares(t.data, t.dtype, t.numel);
    return s;
  }
  void scale(void* x, DType dtype, size_t n, float factor) override { k_.scale(x, dtype, n, factor); }
  void accumulate(void* dst, DType dst_dtype, const void* src, DType src_dtype, size_t n, float factor) override {
    k_.accumulate(dst, dst_dtype, src, src_dtype, n, factor);
  }
  void cast(const void* src, DType src_dtype, void* dst, DType dst_dtype, size_t n) override {
    k_.cast(src, src_dtype, dst, dst_dtype, n);
  }
  // BlockOptimizerRatio's masked update gathers scattered entries: the reference loop, delegated as it is (the
  // engine adds nothing to a gather; the test checks the delegation against the reference device).
  void sparse_adam(float* param, void* weight, DType weight_dtype, const void* grad, DType grad_dtype,
                   const int32_t* indices, float* m, float* v, size_t k, const ref::SparseAdamArgs& args) override {
    ref::sparse_adam(param, weight, weight_dtype, grad, grad_dtype, indices, m, v, k, args);
  }

  void embedding(const void* table, DType table_dtype, const int32_t* ids, void* out, DType out_dtype, size_t n,
                 size_t vocab, size_t hidden) override {
    k_.embedding(table, table_dtype, ids, out, out_dtype, n, vocab, hidden);
  }
  void embedding_backward(const void* d_out, DType d_out_dtype, const int32_t* ids, float* d_table, size_t n,
                          size_t vocab, size_t hidden) override {
    k_.embedding_backward(d_out, d_out_dtype, ids, d_table, n, vocab, hidden);
  }
  void rms_norm(const void* x, DType x_dtype, const void* weight, DType w_dtype, void* out, DType out_dtype, float* rstd,
                size_t n, size_t hidden, float eps) override {
    k_.rms_norm(x, x_dtype, weight, w_dtype, out, out_dtype, rstd, n, hidden, eps);
  }
  void add_rms_norm(const void* x, const void* delta, void* sum, DType dtype, const void* weight, DType w_dtype, void* out,
                    float* rstd, size_t n, size_t hidden, float eps) override {
    k_.add_rms_norm(x, delta, sum, dtype, weight, w_dtype, out, rstd, n, hidden, eps);
  }
  // The workspace is the GPU's (its column sums); the engine's ordered column sums keep their own partials.
  void rms_norm_backward(const void* d_out, DType d_out_dtype, const void* x, DType x_dtype, const void* weight,
                         DType w_dtype, const float* rstd, void* dx, DType dx_dtype, float* d_weight, size_t n,
                         size_t hidden, bool accumulate_dx, float* /*workspace*/) override {
    k_.rms_norm_backward(d_out, d_out_dtype, x, x_dtype, weight, w_dtype, rstd, dx, dx_dtype, d_weight, n, hidden,
                         accumulate_dx);
  }
  void rope(void* x, DType dtype, const float* cos, const float* sin, size_t n, int seq_len, int heads, int head_dim,
            bool inverse, size_t row_stride) override {
    k_.rope(x, dtype, cos, sin, n, seq_len, heads, head_dim, inverse, row_stride);
  }
  void attention(const void* q, const void* k, const void* v, void* out, float* lse, DType dtype,
                 const ref::AttentionDims& dims) override {
    k_.attention(q, k, v, out, lse, dtype, dims);
  }
  void attention_backward(const void* q, const void* k, const void* v, const void* out, const void* d_out,
                          const float* lse, void* dq, void* dk, void* dv, float* d_rows, float* /*partials*/,
                          DType dtype, const ref::AttentionDims& dims) override {
    k_.attention_backward(q, k, v, out, d_out, lse, dq, dk, dv, d_rows, dtype, dims);
  }
  void swiglu(const void* gate_up, DType gate_up_dtype, void* out, DType out_dtype, size_t rows, size_t inter) override {
    k_.swiglu(gate_up, gate_up_dtype, out, out_dtype, rows, inter);
  }
  void swiglu_backward(const void* gate_up, DType gate_up_dtype, const void* d_out, DType d_out_dtype, void* d_gate_up,
                       DType d_gate_up_dtype, size_t rows, size_t inter) override {
    k_.swiglu_backward(gate_up, gate_up_dtype, d_out, d_out_dtype, d_gate_up, d_gate_up_dtype, rows, inter);
  }
  void add(const void* a, DType a_dtype, const void* b, DType b_dtype, void* out, DType out_dtype, size_t n) override {
    k_.add(a, a_dtype, b, b_dtype, out, out_dtype, n);
  }
  void add_bias(void* x, DType x_dtype, const void* bias, DType bias_dtype, size_t n, size_t channels) override {
    k_.add_bias(x, x_dtype, bias, bias_dtype, n, channels);
  }
  void bias_backward(const void* d_out, DType d_out_dtype, float* d_bias, size_t rows, size_t channels,
                     size_t row_stride, float* /*workspace*/) override {
    k_.bias_backward(d_out, d_out_dtype, d_bias, rows, channels, row_stride);
  }
  void cross_entropy(void* logits, DType dtype, const int32_t* labels, float* losses, size_t rows, size_t vocab,
                     float grad_scale) override {
    k_.cross_entropy(logits, dtype, labels, losses, rows, vocab, grad_scale);
  }
  void argmax_rows(const void* x, DType dtype, int32_t* out, size_t rows, size_t cols) override {
    k_.argmax_rows(x, dtype, out, rows, cols);
  }
  double sum(const void* x, DType dtype, size_t n) override { return k_.sum(x, dtype, n); }

 private:
  const engine::Isa isa_;
  const engine::KernelTable& k_;
};

}  // namespace

std::unique_ptr<Device> make_cpu_engine_device(const std::string& instruction_set) {
  return std::make_unique<CpuEngineDevice>(engine::isa_from_name(instruction_set));
}

}  // namespace badam
