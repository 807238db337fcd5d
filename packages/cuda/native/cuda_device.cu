// The CUDA device: memory from cudaMalloc through a stream, BAdam's elementwise kernels written here, and
// GEMMs through cuBLAS loaded at run time. Each kernel has its CPU reference in reference.cc; the device
// check (packages/cuda/device-check.sh) compares the two on fresh random data.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <stdexcept>
#include <string>

#include "cublas_loader.h"
#include "cuda_check.h"
#include "device.h"
#include "element_access.h"
#include "llama_kernels.h"
#include "optimizer_math.h"

namespace badam {
namespace {

constexpr int kThreads = 256;

int blocks_for(size_t n) {
  size_t b = (n + kThreads - 1) / kThreads;
  return static_cast<int>(b < 65535 * 8 ? (b == 0 ? 1 : b) : 65535 * 8);
}

__global__ void fill_kernel(void* dst, int dtype, size_t n, float value) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) store_f32(dst, dtype, i, value);
}

// Fused AdamW: one read of master, m, v, grad; one write of master, m, v and the rounded weight. The
// element's math is optim::adamw_element, the reference's own.
template <int WDT, int GDT>
__global__ void adamw_kernel(float* __restrict__ master, void* __restrict__ weight, const void* __restrict__ grad,
                             float* __restrict__ m, float* __restrict__ v, size_t n, optim::AdamWStep step) {
  float* p = master != nullptr ? master : static_cast<float*>(weight);
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const float next = optim::adamw_element(step, load_f32(grad, GDT, i), p[i], m[i], v[i]);
    if (master != nullptr) store_f32(weight, WDT, i, next);
  }
}

// Sum of squares, deterministic: a fixed grid writes per-block partials (in double), one block adds them.
constexpr int kReduceBlocks = 1024;

__global__ void sum_squares_partial(const void* x, int dtype, size_t n, double* partials, bool accumulate) {
  __shared__ double shared[kThreads];
  double s = 0.0;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const double v = load_f32(x, dtype, i);
    s += v * v;
  }
  shared[threadIdx.x] = s;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) shared[threadIdx.x] += shared[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) partials[blockIdx.x] = (accumulate ? partials[blockIdx.x] : 0.0) + shared[0];
}

__global__ void sum_partials(const double* partials, int count, double* out) {
  __shared__ double shared[kThreads];
  double s = 0.0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) s += partials[i];
  shared[threadIdx.x] = s;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) shared[threadIdx.x] += shared[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = shared[0];
}

__global__ void scale_kernel(void* x, int dtype, size_t n, float factor) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) store_f32(x, dtype, i, load_f32(x, dtype, i) * factor);
}

// dst += src * factor in fp32, rounded to dst's dtype: gradient accumulation (fp32 or 16-bit gradients).
__global__ void accumulate_kernel(void* dst, int dst_dtype, const void* src, int dtype, size_t n, float factor) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    store_f32(dst, dst_dtype, i, load_f32(dst, dst_dtype, i) + load_f32(src, dtype, i) * factor);
  }
}

__global__ void cast_kernel(const void* src, int sdt, void* dst, int ddt, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) store_f32(dst, ddt, i, load_f32(src, sdt, i));
}

__global__ void sparse_adam_kernel(float* param, void* weight, int wdt, const void* grad, int gdt, const int* indices,
                                   float* m, float* v, size_t k, float beta1, float beta2, float eps, float step_size) {
  for (size_t j = blockIdx.x * (size_t)blockDim.x + threadIdx.x; j < k; j += (size_t)gridDim.x * blockDim.x) {
    const size_t i = static_cast<size_t>(indices[j]);
    const float next = optim::sparse_adam_element(beta1, beta2, eps, step_size, load_f32(grad, gdt, i), param[i], m[j], v[j]);
    if (weight != nullptr) store_f32(weight, wdt, i, next);
  }
}

template <int W>
void launch_adamw_w(float* master, void* weight, const void* grad, DType gdt, float* m, float* v, size_t n,
                    const optim::AdamWStep& step, cudaStream_t stream) {
  switch (gdt) {
    case DType::BF16: adamw_kernel<W, 1><<<blocks_for(n), kThreads, 0, stream>>>(master, weight, grad, m, v, n, step); break;
    case DType::F16: adamw_kernel<W, 2><<<blocks_for(n), kThreads, 0, stream>>>(master, weight, grad, m, v, n, step); break;
    default: adamw_kernel<W, 0><<<blocks_for(n), kThreads, 0, stream>>>(master, weight, grad, m, v, n, step); break;
  }
}

cublas::DataType cublas_type(DType t) {
  switch (t) {
    case DType::BF16: return cublas::kR16BF;
    case DType::F16: return cublas::kR16F;
    case DType::F32: return cublas::kR32F;
    default: throw std::invalid_argument("gemm: int32 operands are not supported");
  }
}

class CudaDevice final : public Device {
 public:
  explicit CudaDevice(int ordinal) : ordinal_(ordinal) {
    CUDA_CHECK(cudaSetDevice(ordinal));
    CUDA_CHECK(cudaGetDeviceProperties(&props_, ordinal));
    if (props_.major < 8) {
      throw std::runtime_error(std::string(props_.name) + " has compute capability " + std::to_string(props_.major) + "." +
                               std::to_string(props_.minor) +
                               "; @badam/cuda needs 8.0 or newer (Ampere, Ada, Hopper, Blackwell): its kernels use bf16 "
                               "tensor cores");
    }
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    CUDA_CHECK(cudaMalloc(&partials_, sizeof(double) * (kReduceBlocks + 1)));
    std::string error;
    api_ = cublas::load(&error);
    if (api_ == nullptr) throw std::runtime_error(error);
    check_cublas(api_->create(&handle_), "cublasCreate");
    check_cublas(api_->set_stream(handle_, stream_), "cublasSetStream");
    check_cublas(api_->get_version(handle_, &cublas_version_), "cublasGetVersion");
  }
  ~CudaDevice() override {
    cudaSetDevice(ordinal_);
    if (handle_ != nullptr) api_->destroy(handle_);
    cudaFree(partials_);
    cudaStreamDestroy(stream_);
  }

  DeviceInfo info() const override {
    DeviceInfo i;
    i.kind = "cuda";
    i.name = props_.name;
    i.compute_major = props_.major;
    i.compute_minor = props_.minor;
    i.total_memory = props_.totalGlobalMem;
    i.multiprocessors = props_.multiProcessorCount;
    i.gemm_library = "cublas " + std::to_string(cublas_version_);
    return i;
  }

  void* raw_alloc(size_t bytes) override {
    void* p = nullptr;
    cudaError_t err = cudaMalloc(&p, bytes);
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // clear the sticky-free error state of this failure
      return nullptr;
    }
    CUDA_CHECK(err);
    return p;
  }
  // Never throws: it runs from destructors and finalizers, possibly while the CUDA runtime shuts down.
  void raw_free(void* ptr) noexcept override {
    cudaStreamSynchronize(stream_);
    cudaFree(ptr);
    cudaGetLastError();
  }
  void upload(void* dst, const void* host, size_t bytes) override {
    CUDA_CHECK(cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));  // the host buffer belongs to JS and may move after return
  }
  void download(void* host, const void* src, size_t bytes) override {
    CUDA_CHECK(cudaMemcpyAsync(host, src, bytes, cudaMemcpyDeviceToHost, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void copy(void* dst, const void* src, size_t bytes) override {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
  }
  void fill(void* dst, DType dtype, size_t n, float value) override {
    fill_kernel<<<blocks_for(n), kThreads, 0, stream_>>>(dst, static_cast<int>(dtype), n, value);
    LAUNCH_CHECK();
  }
  void synchronize() override { CUDA_CHECK(cudaStreamSynchronize(stream_)); }

  void gemm(const void* a, const void* b, void* c, DType ab, DType cdt, int m, int n, int k, bool trans_a, bool trans_b,
            float alpha, float beta, const ref::GemmLayout& ld) override {
    // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands (a row-major
    // leading dimension is the column-major one of the transposed matrix).
    check_cublas(api_->gemm_ex(handle_, trans_b ? cublas::kOpT : cublas::kOpN, trans_a ? cublas::kOpT : cublas::kOpN, n, m, k,
                               &alpha, b, cublas_type(ab), ld.ldb, a, cublas_type(ab), ld.lda, &beta, c, cublas_type(cdt),
                               ld.ldc, cublas::kCompute32F, cublas::kGemmDefault),
                 "cublasGemmEx");
  }
  /** NVIDIA's guidance for cublasSetWorkspace: 32 MiB on Hopper (and newer), 4 MiB before. */
  size_t gemm_workspace_bytes() const override { return (props_.major >= 9 ? 32 : 4) << 20; }
  void set_gemm_workspace(void* workspace, size_t bytes) override {
    check_cublas(api_->set_workspace(handle_, workspace, bytes), "cublasSetWorkspace");
  }

  void adamw(float* master, void* weight, DType wdt, const void* grad, DType gdt, float* m, float* v, size_t n,
             const ref::AdamWArgs& args) override {
    const optim::AdamWStep step = ref::adamw_step(args);
    switch (wdt) {
      case DType::BF16: launch_adamw_w<1>(master, weight, grad, gdt, m, v, n, step, stream_); break;
      case DType::F16: launch_adamw_w<2>(master, weight, grad, gdt, m, v, n, step, stream_); break;
      default: launch_adamw_w<0>(master, weight, grad, gdt, m, v, n, step, stream_); break;
    }
    LAUNCH_CHECK();
  }

  double sum_squares(const std::vector<TensorView>& tensors) override {
    CUDA_CHECK(cudaMemsetAsync(partials_, 0, sizeof(double) * (kReduceBlocks + 1), stream_));
    for (const auto& t : tensors) {
      if (t.numel == 0) continue;
      sum_squares_partial<<<kReduceBlocks, kThreads, 0, stream_>>>(t.data, static_cast<int>(t.dtype), t.numel, partials_, true);
      LAUNCH_CHECK();
    }
    sum_partials<<<1, kThreads, 0, stream_>>>(partials_, kReduceBlocks, partials_ + kReduceBlocks);
    LAUNCH_CHECK();
    double out = 0;
    CUDA_CHECK(cudaMemcpyAsync(&out, partials_ + kReduceBlocks, sizeof(double), cudaMemcpyDeviceToHost, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    return out;
  }
  void scale(void* x, DType dtype, size_t n, float factor) override {
    scale_kernel<<<blocks_for(n), kThreads, 0, stream_>>>(x, static_cast<int>(dtype), n, factor);
    LAUNCH_CHECK();
  }
  void accumulate(void* dst, DType ddt, const void* src, DType sdt, size_t n, float factor) override {
    accumulate_kernel<<<blocks_for(n), kThreads, 0, stream_>>>(dst, static_cast<int>(ddt), src, static_cast<int>(sdt), n,
                                                               factor);
    LAUNCH_CHECK();
  }
  void cast(const void* src, DType sdt, void* dst, DType ddt, size_t n) override {
    cast_kernel<<<blocks_for(n), kThreads, 0, stream_>>>(src, static_cast<int>(sdt), dst, static_cast<int>(ddt), n);
    LAUNCH_CHECK();
  }
  void sparse_adam(float* param, void* weight, DType wdt, const void* grad, DType gdt, const int32_t* indices, float* m,
                   float* v, size_t k, const ref::SparseAdamArgs& args) override {
    if (k == 0) return;
    sparse_adam_kernel<<<blocks_for(k), kThreads, 0, stream_>>>(param, weight, static_cast<int>(wdt), grad, static_cast<int>(gdt),
                                                               indices, m, v, k, args.beta1, args.beta2, args.eps,
                                                               ref::sparse_adam_step_size(args));
    LAUNCH_CHECK();
  }

  // The Llama ops: kernels in the *_kernels.cu and attention*.cu files, references in llama_reference.cc.
  void embedding(const void* table, DType table_dtype, const int32_t* ids, void* out, DType out_dtype, size_t n,
                 size_t vocab, size_t hidden) override {
    cuda_llama::embedding(table, table_dtype, ids, out, out_dtype, n, vocab, hidden, stream_);
  }
  void embedding_backward(const void* d_out, DType d_out_dtype, const int32_t* ids, float* d_table, size_t n,
                          size_t vocab, size_t hidden) override {
    cuda_llama::embedding_backward(d_out, d_out_dtype, ids, d_table, n, vocab, hidden, stream_);
  }
  void rms_norm(const void* x, DType x_dtype, const void* weight, DType w_dtype, void* out, DType out_dtype, float* rstd,
                size_t n, size_t hidden, float eps) override {
    cuda_llama::rms_norm(x, x_dtype, weight, w_dtype, out, out_dtype, rstd, n, hidden, eps, stream_);
  }
  void add_rms_norm(const void* x, const void* delta, void* sum, DType dtype, const void* weight, DType w_dtype, void* out,
                    float* rstd, size_t n, size_t hidden, float eps) override {
    cuda_llama::add_rms_norm(x, delta, sum, dtype, weight, w_dtype, out, rstd, n, hidden, eps, stream_);
  }
  void rms_norm_backward(const void* d_out, DType d_out_dtype, const void* x, DType x_dtype, const void* weight,
                         DType w_dtype, const float* rstd, void* dx, DType dx_dtype, float* d_weight, size_t n,
                         size_t hidden, bool accumulate_dx, float* workspace) override {
    cuda_llama::rms_norm_backward(d_out, d_out_dtype, x, x_dtype, weight, w_dtype, rstd, dx, dx_dtype, d_weight, n, hidden,
                                  accumulate_dx, workspace, stream_);
  }
  void rope(void* x, DType dtype, const float* cos, const float* sin, size_t n, int seq_len, int heads, int head_dim,
            bool inverse, size_t row_stride) override {
    cuda_llama::rope(x, dtype, cos, sin, n, seq_len, heads, head_dim, inverse, row_stride, stream_);
  }
  void attention(const void* q, const void* k, const void* v, void* out, float* lse, DType dtype,
                 const ref::AttentionDims& dims) override {
    cuda_llama::attention(q, k, v, out, lse, dtype, dims, stream_);
  }
  void attention_backward(const void* q, const void* k, const void* v, const void* out, const void* d_out,
                          const float* lse, void* dq, void* dk, void* dv, float* d_rows, float* partials, DType dtype,
                          const ref::AttentionDims& dims) override {
    cuda_llama::attention_backward(q, k, v, out, d_out, lse, dq, dk, dv, d_rows, partials, dtype, dims, stream_);
  }
  void swiglu(const void* gate_up, DType gate_up_dtype, void* out, DType out_dtype, size_t rows, size_t inter) override {
    cuda_llama::swiglu(gate_up, gate_up_dtype, out, out_dtype, rows, inter, stream_);
  }
  void swiglu_backward(const void* gate_up, DType gate_up_dtype, const void* d_out, DType d_out_dtype, void* d_gate_up,
                       DType d_gate_up_dtype, size_t rows, size_t inter) override {
    cuda_llama::swiglu_backward(gate_up, gate_up_dtype, d_out, d_out_dtype, d_gate_up, d_gate_up_dtype, rows, inter,
                                stream_);
  }
  void add(const void* a, DType a_dtype, const void* b, DType b_dtype, void* out, DType out_dtype, size_t n) override {
    cuda_llama::add(a, a_dtype, b, b_dtype, out, out_dtype, n, stream_);
  }
  void add_bias(void* x, DType x_dtype, const void* bias, DType bias_dtype, size_t n, size_t channels) override {
    cuda_llama::add_bias(x, x_dtype, bias, bias_dtype, n, channels, stream_);
  }
  void bias_backward(const void* d_out, DType d_out_dtype, float* d_bias, size_t rows, size_t channels, size_t row_stride,
                     float* workspace) override {
    cuda_llama::bias_backward(d_out, d_out_dtype, d_bias, rows, channels, row_stride, workspace, stream_);
  }
  void cross_entropy(void* logits, DType dtype, const int32_t* labels, float* losses, size_t rows, size_t vocab,
                     float grad_scale) override {
    cuda_llama::cross_entropy(logits, dtype, labels, losses, rows, vocab, grad_scale, stream_);
  }
  void argmax_rows(const void* x, DType dtype, int32_t* out, size_t rows, size_t cols) override {
    cuda_llama::argmax_rows(x, dtype, out, rows, cols, stream_);
  }
  double sum(const void* x, DType dtype, size_t n) override {
    return cuda_llama::sum(x, dtype, n, partials_, kReduceBlocks, stream_);
  }

 private:
  void check_cublas(cublas::Status status, const char* what) {
    if (status != 0) throw std::runtime_error(std::string(what) + " failed: " + cublas::status_name(status));
  }

  int ordinal_;
  cudaDeviceProp props_{};
  cudaStream_t stream_ = nullptr;
  double* partials_ = nullptr;
  const cublas::Api* api_ = nullptr;
  cublas::Handle handle_ = nullptr;
  int cublas_version_ = 0;
};

}  // namespace

bool cuda_compiled() { return true; }

int cuda_device_count(std::string* reason) {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();
    if (reason) {
      *reason = std::string("no usable CUDA device: cudaGetDeviceCount failed with ") + cudaGetErrorName(err) + " (" +
                cudaGetErrorString(err) + "); this needs an NVIDIA GPU with a CUDA 13 driver (libcuda.so)";
    }
    return -1;
  }
  if (count == 0 && reason) *reason = "no CUDA device found (cudaGetDeviceCount = 0)";
  return count;
}

std::unique_ptr<Device> make_cuda_device(int ordinal) {
  std::string reason;
  const int count = cuda_device_count(&reason);
  if (count <= 0) throw std::runtime_error(reason);
  if (ordinal < 0 || ordinal >= count) {
    throw std::runtime_error("CUDA device " + std::to_string(ordinal) + " does not exist (" + std::to_string(count) + " found)");
  }
  return std::make_unique<CudaDevice>(ordinal);
}

}  // namespace badam
