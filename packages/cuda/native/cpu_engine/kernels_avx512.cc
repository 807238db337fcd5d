// The CPU engine's kernels with AVX-512: the row primitives in intrinsics (16 fp32 lanes, masked tails, a
// vector exp), then the shared algorithms of kernels_impl.h compiled for AVX-512 too. Everything after the
// pragma is compiled for AVX-512 and lives in badam::engine::avx512 (its own names: nothing here can stand
// in for a portable function at link time); the device calls it only on CPUs that have AVX-512
// (isa.h). The standard headers are included before the pragma, so their code keeps the baseline target.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "../llama_math.h"
#include "../optimizer_math.h"
#include "kernels.h"
#include "thread_pool.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,fma,f16c,prefer-vector-width=512")

namespace badam::engine::avx512 {

// --- vector helpers ---------------------------------------------------------------------------------------

inline __mmask16 tail_mask(size_t left) { return left >= 16 ? 0xffff : static_cast<__mmask16>((1u << left) - 1); }

/** exp of 16 lanes (Cephes' polynomial on [-ln2/2, ln2/2], scaled by 2^n with scalef): within 2 ulp of expf;
 * -inf and anything below -110 give 0, above 89 infinity, NaN stays NaN. */
inline __m512 exp512(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(-110.0f), x);  // max / min return the second operand when it is NaN
  x = _mm512_min_ps(_mm512_set1_ps(89.0f), x);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

/** fp32 -> bf16 bits, round to nearest even, NaN kept (quiet): f32_to_bf16 on 16 lanes. */
inline __m256i bf16_bits(__m512 x) {
  const __m512i u = _mm512_castps_si512(x);
  const __mmask16 nan =
      _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), odd)), 16);
  r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40)));
  return _mm512_cvtepi32_epi16(r);
}

inline __m512 bf16_widen(__m256i bits) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16)); }

// --- row primitives ---------------------------------------------------------------------------------------

inline void load_row(const void* src, DType t, size_t off, float* dst, size_t n) {
  if (t == DType::F32) {
    std::memcpy(dst, static_cast<const float*>(src) + off, n * sizeof(float));
  } else if (t == DType::BF16) {
    const uint16_t* bits = static_cast<const uint16_t*>(src) + off;
    for (size_t i = 0; i < n; i += 16) {
      const __mmask16 live = tail_mask(n - i);
      _mm512_mask_storeu_ps(dst + i, live, bf16_widen(_mm256_maskz_loadu_epi16(live, bits + i)));
    }
  } else if (t == DType::F16) {
    const uint16_t* bits = static_cast<const uint16_t*>(src) + off;
    for (size_t i = 0; i < n; i += 16) {
      const __mmask16 live = tail_mask(n - i);
      _mm512_mask_storeu_ps(dst + i, live, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(live, bits + i)));
    }
  } else {
    for (size_t i = 0; i < n; i++) dst[i] = load_as_f32(src, t, off + i);
  }
}

inline void store_row(const float* src, void* dst, DType t, size_t off, size_t n) {
  if (t == DType::F32) {
    std::memcpy(static_cast<float*>(dst) + off, src, n * sizeof(float));
  } else if (t == DType::BF16) {
    uint16_t* bits = static_cast<uint16_t*>(dst) + off;
    for (size_t i = 0; i < n; i += 16) {
      const __mmask16 live = tail_mask(n - i);
      _mm256_mask_storeu_epi16(bits + i, live, bf16_bits(_mm512_maskz_loadu_ps(live, src + i)));
    }
  } else if (t == DType::F16) {
    uint16_t* bits = static_cast<uint16_t*>(dst) + off;
    for (size_t i = 0; i < n; i += 16) {
      const __mmask16 live = tail_mask(n - i);
      const __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(live, src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      _mm256_mask_storeu_epi16(bits + i, live, h);
    }
  } else {
    for (size_t i = 0; i < n; i++) store_from_f32(dst, t, off + i, src[i]);
  }
}

inline void round_row(float* x, size_t n, DType t) {
  if (t == DType::BF16) {
    for (size_t i = 0; i < n; i += 16) {
      const __mmask16 live = tail_mask(n - i);
      _mm512_mask_storeu_ps(x + i, live, bf16_widen(bf16_bits(_mm512_maskz_loadu_ps(live, x + i))));
    }
  } else if (t == DType::F16) {
    for (size_t i = 0; i < n; i += 16) {
      const __mmask16 live = tail_mask(n - i);
      const __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(live, x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      _mm512_mask_storeu_ps(x + i, live, _mm512_cvtph_ps(h));
    }
  }
}

inline float max_of(const float* x, size_t n) {
  __m512 m = _mm512_set1_ps(-INFINITY);
  for (size_t i = 0; i < n; i += 16) {
    const __m512 v = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), tail_mask(n - i), x + i);
    m = _mm512_max_ps(v, m);  // a NaN lane of v keeps m: NaNs never win
  }
  return _mm512_reduce_max_ps(m);
}

inline float exp_sum(float* x, size_t n, float shift) {
  const __m512 s = _mm512_set1_ps(shift);
  __m512 acc = _mm512_setzero_ps();
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 live = tail_mask(n - i);
    const __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(live, x + i), s));
    _mm512_mask_storeu_ps(x + i, live, e);
    acc = _mm512_mask_add_ps(acc, live, acc, e);
  }
  return _mm512_reduce_add_ps(acc);
}

inline void exp_scale(float* x, size_t n, float shift, float factor) {
  const __m512 s = _mm512_set1_ps(shift), f = _mm512_set1_ps(factor);
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 live = tail_mask(n - i);
    _mm512_mask_storeu_ps(x + i, live, _mm512_mul_ps(exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(live, x + i), s)), f));
  }
}

inline float dot(const float* a, const float* b, size_t n) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
  }
  for (; i < n; i += 16) {
    const __mmask16 live = tail_mask(n - i);
    acc0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(live, a + i), _mm512_maskz_loadu_ps(live, b + i), acc0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

inline double sum_f64(const float* x, size_t n) {
  __m512d acc = _mm512_setzero_pd();
  for (size_t i = 0; i < n; i += 8) {
    const __mmask8 live = static_cast<__mmask8>(n - i >= 8 ? 0xff : (1u << (n - i)) - 1);
    acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm256_maskz_loadu_ps(live, x + i)));
  }
  return _mm512_reduce_add_pd(acc);
}

inline double sum_squares_f64(const float* x, size_t n) {
  __m512d acc = _mm512_setzero_pd();
  for (size_t i = 0; i < n; i += 8) {
    const __mmask8 live = static_cast<__mmask8>(n - i >= 8 ? 0xff : (1u << (n - i)) - 1);
    const __m512d v = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(live, x + i));
    acc = _mm512_fmadd_pd(v, v, acc);
  }
  return _mm512_reduce_add_pd(acc);
}

/** R rows x V vectors of C (+)= A B over K, accumulators in registers. */
template <int R, int V>
inline void tile_block(int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc, bool accumulate) {
  __m512 acc[R][V];
  for (int r = 0; r < R; r++)
    for (int v = 0; v < V; v++)
      acc[r][v] = accumulate ? _mm512_loadu_ps(C + static_cast<size_t>(r) * ldc + 16 * v) : _mm512_setzero_ps();
  for (int p = 0; p < K; p++) {
    __m512 bv[V];
    for (int v = 0; v < V; v++) bv[v] = _mm512_loadu_ps(B + static_cast<size_t>(p) * ldb + 16 * v);
    for (int r = 0; r < R; r++) {
      const __m512 a = _mm512_set1_ps(A[static_cast<size_t>(r) * lda + p]);
      for (int v = 0; v < V; v++) acc[r][v] = _mm512_fmadd_ps(a, bv[v], acc[r][v]);
    }
  }
  for (int r = 0; r < R; r++)
    for (int v = 0; v < V; v++) _mm512_storeu_ps(C + static_cast<size_t>(r) * ldc + 16 * v, acc[r][v]);
}

template <int R>
inline void tile_rows(int V, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc, bool accumulate) {
  switch (V) {
    case 4: tile_block<R, 4>(K, A, lda, B, ldb, C, ldc, accumulate); break;
    case 3: tile_block<R, 3>(K, A, lda, B, ldb, C, ldc, accumulate); break;
    case 2: tile_block<R, 2>(K, A, lda, B, ldb, C, ldc, accumulate); break;
    default: tile_block<R, 1>(K, A, lda, B, ldb, C, ldc, accumulate); break;
  }
}

/** C[M, N] (+)= A[M, K] B[K, N], row-major fp32 with leading dimensions; N a multiple of 16. */
inline void tile_gemm(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
                      bool accumulate) {
  for (int j0 = 0; j0 < N; j0 += 64) {
    const int V = std::min(4, (N - j0) / 16);
    int i = 0;
    for (; i + 4 <= M; i += 4)
      tile_rows<4>(V, K, A + static_cast<size_t>(i) * lda, lda, B + j0, ldb, C + static_cast<size_t>(i) * ldc + j0, ldc,
                   accumulate);
    for (; i < M; i++)
      tile_rows<1>(V, K, A + static_cast<size_t>(i) * lda, lda, B + j0, ldb, C + static_cast<size_t>(i) * ldc + j0, ldc,
                   accumulate);
  }
}

/** silu(g) * u = (g * sigmoid(g)) * u, as llama::swiglu_value. */
inline void swiglu_row(const float* g, const float* u, float* out, size_t n) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 live = tail_mask(n - i);
    const __m512 gv = _mm512_maskz_loadu_ps(live, g + i);
    const __m512 s = _mm512_div_ps(one, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), gv))));
    _mm512_mask_storeu_ps(out + i, live, _mm512_mul_ps(_mm512_mul_ps(gv, s), _mm512_maskz_loadu_ps(live, u + i)));
  }
}

/** llama::swiglu_d_gate and swiglu_d_up; `du` may be `u`. */
inline void swiglu_backward_row(const float* g, const float* u, const float* d, float* dg, float* du, size_t n) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 live = tail_mask(n - i);
    const __m512 gv = _mm512_maskz_loadu_ps(live, g + i);
    const __m512 uv = _mm512_maskz_loadu_ps(live, u + i);
    const __m512 dv = _mm512_maskz_loadu_ps(live, d + i);
    const __m512 s = _mm512_div_ps(one, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), gv))));
    const __m512 grow = _mm512_add_ps(one, _mm512_mul_ps(gv, _mm512_sub_ps(one, s)));
    _mm512_mask_storeu_ps(dg + i, live, _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(dv, uv), s), grow));
    _mm512_mask_storeu_ps(du + i, live, _mm512_mul_ps(_mm512_mul_ps(dv, gv), s));
  }
}

/** optim::adamw_element on 16 lanes, the same operations in the same order (no fused multiply-add). */
inline void adamw_row(const optim::AdamWStep& s, const float* g, float* p, float* m, float* v, size_t n) {
  const __m512 b1 = _mm512_set1_ps(s.beta1), b2 = _mm512_set1_ps(s.beta2);
  const __m512 one_b1 = _mm512_set1_ps(1.0f - s.beta1), one_b2 = _mm512_set1_ps(1.0f - s.beta2);
  const __m512 gs = _mm512_set1_ps(s.grad_scale), eps = _mm512_set1_ps(s.eps), bc2 = _mm512_set1_ps(s.bc2_sqrt);
  const __m512 decay = _mm512_set1_ps(s.decay), step = _mm512_set1_ps(s.step_size);
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 live = tail_mask(n - i);
    const __m512 gv = _mm512_mul_ps(_mm512_maskz_loadu_ps(live, g + i), gs);
    const __m512 mv = _mm512_add_ps(_mm512_mul_ps(b1, _mm512_maskz_loadu_ps(live, m + i)), _mm512_mul_ps(one_b1, gv));
    const __m512 vv = _mm512_add_ps(_mm512_mul_ps(b2, _mm512_maskz_loadu_ps(live, v + i)),
                                    _mm512_mul_ps(_mm512_mul_ps(one_b2, gv), gv));
    const __m512 denom = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vv), bc2), eps);
    const __m512 pv = _mm512_sub_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(live, p + i), decay),
                                    _mm512_div_ps(_mm512_mul_ps(step, mv), denom));
    _mm512_mask_storeu_ps(m + i, live, mv);
    _mm512_mask_storeu_ps(v + i, live, vv);
    _mm512_mask_storeu_ps(p + i, live, pv);
  }
}

#include "kernels_impl.h"

}  // namespace badam::engine::avx512

#pragma GCC pop_options

namespace badam::engine {
const KernelTable& avx512_kernels() {
  static const KernelTable table = avx512::kernel_table("avx512");
  return table;
}
}  // namespace badam::engine

#else  // not x86: the portable table stands in (isa.h never selects AVX-512 there)

namespace badam::engine {
const KernelTable& avx512_kernels() { return generic_kernels(); }
}  // namespace badam::engine

#endif
