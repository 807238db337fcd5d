// The CPU engine's kernels in portable C++: the row primitives as plain loops over fp32 (the compiler's
// baseline vectors), then the shared algorithms of kernels_impl.h. Runs on any CPU; also the engine's path on
// x86 CPUs without AVX-512, and forced with the device's instruction-set option in tests.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "../llama_math.h"
#include "../optimizer_math.h"
#include "kernels.h"
#include "thread_pool.h"

namespace badam::engine::generic {

// --- row primitives --------------------------------------------------------------------------------------

inline void load_row(const void* src, DType t, size_t off, float* dst, size_t n) {
  if (t == DType::F32) {
    std::memcpy(dst, static_cast<const float*>(src) + off, n * sizeof(float));
  } else if (t == DType::BF16) {
    const uint16_t* bits = static_cast<const uint16_t*>(src) + off;
    for (size_t i = 0; i < n; i++) dst[i] = bf16_to_f32(bits[i]);
  } else {
    for (size_t i = 0; i < n; i++) dst[i] = load_as_f32(src, t, off + i);
  }
}

inline void store_row(const float* src, void* dst, DType t, size_t off, size_t n) {
  if (t == DType::F32) {
    std::memcpy(static_cast<float*>(dst) + off, src, n * sizeof(float));
  } else if (t == DType::BF16) {
    uint16_t* bits = static_cast<uint16_t*>(dst) + off;
    for (size_t i = 0; i < n; i++) bits[i] = f32_to_bf16(src[i]);
  } else {
    for (size_t i = 0; i < n; i++) store_from_f32(dst, t, off + i, src[i]);
  }
}

inline void round_row(float* x, size_t n, DType t) {
  if (t == DType::F32) return;
  for (size_t i = 0; i < n; i++) x[i] = round_to(t, x[i]);
}

inline float max_of(const float* x, size_t n) {
  float m = -INFINITY;
  for (size_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;  // NaNs never win
  return m;
}

inline float exp_sum(float* x, size_t n, float shift) {
  float s = 0.0f;
  for (size_t i = 0; i < n; i++) {
    x[i] = std::exp(x[i] - shift);
    s += x[i];
  }
  return s;
}

inline void exp_scale(float* x, size_t n, float shift, float factor) {
  for (size_t i = 0; i < n; i++) x[i] = std::exp(x[i] - shift) * factor;
}

inline float dot(const float* a, const float* b, size_t n) {
  float s = 0.0f;
  for (size_t i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

inline double sum_f64(const float* x, size_t n) {
  double s = 0.0;
  for (size_t i = 0; i < n; i++) s += x[i];
  return s;
}

inline double sum_squares_f64(const float* x, size_t n) {
  double s = 0.0;
  for (size_t i = 0; i < n; i++) s += static_cast<double>(x[i]) * x[i];
  return s;
}

/** C[M, N] (+)= A[M, K] B[K, N], row-major fp32 with leading dimensions; N a multiple of 16. */
inline void tile_gemm(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
                      bool accumulate) {
  for (int i = 0; i < M; i++) {
    float* c = C + static_cast<size_t>(i) * ldc;
    if (!accumulate) std::fill(c, c + N, 0.0f);
    for (int p = 0; p < K; p++) {
      const float a = A[static_cast<size_t>(i) * lda + p];
      const float* b = B + static_cast<size_t>(p) * ldb;
      for (int j = 0; j < N; j++) c[j] += a * b[j];
    }
  }
}

inline void swiglu_row(const float* g, const float* u, float* out, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = llama::swiglu_value(g[i], u[i]);
}

inline void swiglu_backward_row(const float* g, const float* u, const float* d, float* dg, float* du, size_t n) {
  for (size_t i = 0; i < n; i++) {
    dg[i] = llama::swiglu_d_gate(g[i], u[i], d[i]);
    du[i] = llama::swiglu_d_up(g[i], d[i]);
  }
}

inline void adamw_row(const optim::AdamWStep& s, const float* g, float* p, float* m, float* v, size_t n) {
  for (size_t i = 0; i < n; i++) optim::adamw_element(s, g[i], p[i], m[i], v[i]);
}

#include "kernels_impl.h"

}  // namespace badam::engine::generic

namespace badam::engine {
const KernelTable& generic_kernels() {
  static const KernelTable table = generic::kernel_table("generic");
  return table;
}
}  // namespace badam::engine
