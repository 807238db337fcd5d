// Blocked GEMM in the GotoBLAS style: op(B) is packed into panels of NR columns by KC rows (shared by the
// threads), op(A) into panels of MR rows (per thread), and a register-blocked micro-kernel computes MR x NR
// tiles. Two operand formats: fp32 panels (fp32 FMA micro-kernels; 16-bit operands widened while packing)
// and, for bf16 on AVX512_BF16, panels of bf16 pairs along k that vdpbf16ps multiplies and adds in one
// instruction. Every tile is computed by one thread in a fixed order of k, so results do not depend on the
// number of threads.
#include "engine_gemm.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "thread_pool.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define BADAM_ENGINE_X86 1
#endif

namespace badam::engine {
namespace {

// ---- micro-kernels: tile[MR x NR] = Ap[units x MR] * Bp[units x NR] (a unit is one k, or one pair of k)

struct Kernel {
  int mr, nr;
  bool pairs;  // panels hold bf16 pairs (uint32) along k instead of fp32
  void (*run)(int64_t units, const void* ap, const void* bp, float* tile);
  const char* name;
};

void kernel_generic(int64_t kc, const void* ap_, const void* bp_, float* tile) {
  constexpr int MR = 4, NR = 16;
  const auto* ap = static_cast<const float*>(ap_);
  const auto* bp = static_cast<const float*>(bp_);
  float acc[MR][NR] = {};
  for (int64_t p = 0; p < kc; ++p) {
    for (int i = 0; i < MR; ++i) {
      const float av = ap[p * MR + i];
      for (int j = 0; j < NR; ++j) acc[i][j] += av * bp[p * NR + j];
    }
  }
  std::memcpy(tile, acc, sizeof(acc));
}

#ifdef BADAM_ENGINE_X86
__attribute__((target("avx2,fma"))) void kernel_avx2(int64_t kc, const void* ap_, const void* bp_, float* tile) {
  constexpr int MR = 6;
  const auto* ap = static_cast<const float*>(ap_);
  const auto* bp = static_cast<const float*>(bp_);
  __m256 c[MR][2];
  for (int i = 0; i < MR; ++i) c[i][0] = c[i][1] = _mm256_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    const __m256 b0 = _mm256_loadu_ps(bp + p * 16);
    const __m256 b1 = _mm256_loadu_ps(bp + p * 16 + 8);
    for (int i = 0; i < MR; ++i) {
      const __m256 a = _mm256_broadcast_ss(ap + p * MR + i);
      c[i][0] = _mm256_fmadd_ps(a, b0, c[i][0]);
      c[i][1] = _mm256_fmadd_ps(a, b1, c[i][1]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    _mm256_storeu_ps(tile + i * 16, c[i][0]);
    _mm256_storeu_ps(tile + i * 16 + 8, c[i][1]);
  }
}

template <int MR>
__attribute__((target("avx512f"))) void kernel_avx512(int64_t kc, const void* ap_, const void* bp_, float* tile) {
  const auto* ap = static_cast<const float*>(ap_);
  const auto* bp = static_cast<const float*>(bp_);
  __m512 c[MR][2];
  for (int i = 0; i < MR; ++i) c[i][0] = c[i][1] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    const __m512 b0 = _mm512_loadu_ps(bp + p * 32);
    const __m512 b1 = _mm512_loadu_ps(bp + p * 32 + 16);
    for (int i = 0; i < MR; ++i) {
      const __m512 a = _mm512_set1_ps(ap[p * MR + i]);
      c[i][0] = _mm512_fmadd_ps(a, b0, c[i][0]);
      c[i][1] = _mm512_fmadd_ps(a, b1, c[i][1]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    _mm512_storeu_ps(tile + i * 32, c[i][0]);
    _mm512_storeu_ps(tile + i * 32 + 16, c[i][1]);
  }
}

// One unit is a pair of k: lane j of a B vector holds (B[2q][j], B[2q+1][j]) as bf16, and A's pair
// (A[i][2q], A[i][2q+1]) is broadcast, so one vdpbf16ps adds both products of 16 columns in fp32.
template <int MR>
__attribute__((target("avx512f,avx512bf16"))) void kernel_bf16_pairs(int64_t kp, const void* ap_, const void* bp_,
                                                                    float* tile) {
  const auto* ap = static_cast<const uint32_t*>(ap_);
  const auto* bp = static_cast<const uint32_t*>(bp_);
  __m512 c[MR][2];
  for (int i = 0; i < MR; ++i) c[i][0] = c[i][1] = _mm512_setzero_ps();
  for (int64_t q = 0; q < kp; ++q) {
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(bp + q * 32);
    const __m512bh b1 = (__m512bh)_mm512_loadu_si512(bp + q * 32 + 16);
    for (int i = 0; i < MR; ++i) {
      const __m512bh a = (__m512bh)_mm512_set1_epi32(static_cast<int>(ap[q * MR + i]));
      c[i][0] = _mm512_dpbf16_ps(c[i][0], a, b0);
      c[i][1] = _mm512_dpbf16_ps(c[i][1], a, b1);
    }
  }
  for (int i = 0; i < MR; ++i) {
    _mm512_storeu_ps(tile + i * 32, c[i][0]);
    _mm512_storeu_ps(tile + i * 32 + 16, c[i][1]);
  }
}
#endif

const Kernel& kernel_for(Isa isa, DType ab) {
  static const Kernel generic{4, 16, false, kernel_generic, "fp32 portable 4x16"};
#ifdef BADAM_ENGINE_X86
  static const Kernel avx2{6, 16, false, kernel_avx2, "fp32 fma avx2 6x16"};
  static const Kernel avx512{8, 32, false, kernel_avx512<8>, "fp32 fma avx512 8x32"};
  static const Kernel bf16 = [] {
    const char* env = std::getenv("BADAM_ENGINE_MR");
    const int mr = env ? std::atoi(env) : 8;
    if (mr == 12) return Kernel{12, 32, true, kernel_bf16_pairs<12>, "bf16 pairs (vdpbf16ps) 12x32"};
    if (mr == 14) return Kernel{14, 32, true, kernel_bf16_pairs<14>, "bf16 pairs (vdpbf16ps) 14x32"};
    if (mr == 6) return Kernel{6, 32, true, kernel_bf16_pairs<6>, "bf16 pairs (vdpbf16ps) 6x32"};
    return Kernel{8, 32, true, kernel_bf16_pairs<8>, "bf16 pairs (vdpbf16ps) 8x32"};
  }();
  if (isa == Isa::Avx512Bf16 && ab == DType::BF16) return bf16;
  if (isa >= Isa::Avx512) return avx512;
  if (isa == Isa::Avx2) return avx2;
#else
  (void)isa;
  (void)ab;
#endif
  return generic;
}

// ---- packing, straight from the stored dtype (zero-padded to whole panels)

/** op(X) of a row-major operand: element (r, c) is x[c * ld + r] when transposed, else x[r * ld + c]. */
struct Operand {
  const void* data;
  DType dtype;
  int64_t ld;
  bool trans;
};

inline float widen(const void* x, DType t, int64_t i) {
  switch (t) {
    case DType::F32: return static_cast<const float*>(x)[i];
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(x)[i]);
    default: return load_as_f32(x, t, static_cast<size_t>(i));
  }
}

inline int64_t index_of(const Operand& x, int64_t r, int64_t c) { return x.trans ? c * x.ld + r : r * x.ld + c; }

/** fp32 panels of `width` rows of op(X) (rows r0 ..), over k = p0 .. p0 + kc: out[panel][p][width]. */
void pack_f32(const Operand& x, int64_t r0, int64_t rows, int64_t p0, int64_t kc, int width, float* out) {
  for (int64_t g = 0; g < rows; g += width) {
    float* panel = out + (g / width) * kc * width;
    const int64_t live = std::min<int64_t>(width, rows - g);
    if (!x.trans && x.dtype == DType::F32) {
      // rows of op(X) are contiguous along k
      for (int64_t i = 0; i < live; ++i) {
        const float* src = static_cast<const float*>(x.data) + (r0 + g + i) * x.ld + p0;
        for (int64_t p = 0; p < kc; ++p) panel[p * width + i] = src[p];
      }
    } else {
      for (int64_t p = 0; p < kc; ++p)
        for (int64_t i = 0; i < live; ++i) panel[p * width + i] = widen(x.data, x.dtype, index_of(x, r0 + g + i, p0 + p));
    }
    for (int64_t i = live; i < width; ++i)
      for (int64_t p = 0; p < kc; ++p) panel[p * width + i] = 0.0f;
  }
}

/** bf16-pair panels: out[panel][q][width] = (op(X)[r][p0 + 2q], op(X)[r][p0 + 2q + 1]), zero past kc. */
void pack_pairs(const Operand& x, int64_t r0, int64_t rows, int64_t p0, int64_t kc, int width, uint32_t* out) {
  const auto* bits = static_cast<const uint16_t*>(x.data);
  const int64_t units = (kc + 1) / 2;
  for (int64_t g = 0; g < rows; g += width) {
    uint32_t* panel = out + (g / width) * units * width;
    const int64_t live = std::min<int64_t>(width, rows - g);
    if (!x.trans) {
      // a row of op(X) is contiguous along k: its pairs are 32-bit words
      for (int64_t i = 0; i < live; ++i) {
        const uint16_t* src = bits + (r0 + g + i) * x.ld + p0;
        for (int64_t q = 0; q < kc / 2; ++q) {
          uint32_t pair;
          std::memcpy(&pair, src + 2 * q, 4);
          panel[q * width + i] = pair;
        }
        if (kc % 2) panel[(units - 1) * width + i] = src[kc - 1];
      }
    } else {
      // op(X)'s k-th column is the stored row k: interleave two stored rows, contiguous along r
      for (int64_t q = 0; q < units; ++q) {
        const uint16_t* lo = bits + (p0 + 2 * q) * x.ld + r0 + g;
        const uint16_t* hi = 2 * q + 1 < kc ? lo + x.ld : nullptr;
        uint32_t* dst = panel + q * width;
        if (hi != nullptr) {
          for (int64_t i = 0; i < live; ++i) dst[i] = static_cast<uint32_t>(lo[i]) | (static_cast<uint32_t>(hi[i]) << 16);
        } else {
          for (int64_t i = 0; i < live; ++i) dst[i] = lo[i];
        }
      }
    }
    for (int64_t q = 0; q < units; ++q)
      for (int64_t i = live; i < width; ++i) panel[q * width + i] = 0u;
  }
}

/** Grow-only scratch of the calling thread (packing buffers are reused across calls: no page faults per GEMM). */
template <typename T>
T* scratch(std::vector<T>& buffer, size_t n) {
  if (buffer.size() < n) buffer.resize(n);
  return buffer.data();
}

// ---- the driver

struct Plan {
  int64_t m, n, k;
  int64_t kc_max;  // k per block
  int64_t mc = 96, nc = 2048, nsub = 256;
};

// ---- storing tiles: C = alpha * tile + beta * C (first k block), C += alpha * tile (later blocks), a 16-bit C
// rounded once (round to nearest even, as f32_to_bf16). Rows of up to NR columns.

void store_row_f32_portable(float* cr, const float* t, int64_t cols, float alpha, float beta, bool first) {
  if (!first) {
    for (int64_t j = 0; j < cols; ++j) cr[j] += alpha * t[j];
  } else if (beta == 0.0f) {
    for (int64_t j = 0; j < cols; ++j) cr[j] = alpha * t[j];
  } else {
    for (int64_t j = 0; j < cols; ++j) cr[j] = alpha * t[j] + beta * cr[j];
  }
}

void store_row_16_portable(void* c, DType cdt, int64_t at, const float* sum, int64_t cols, float alpha, float beta) {
  for (int64_t j = 0; j < cols; ++j) {
    float out = alpha * sum[j];
    if (beta != 0.0f) out += beta * load_as_f32(c, cdt, static_cast<size_t>(at + j));  // beta 0 never reads C
    store_from_f32(c, cdt, static_cast<size_t>(at + j), out);
  }
}

#ifdef BADAM_ENGINE_X86
__attribute__((target("avx512f,avx512bw,avx512vl"))) void store_row_f32_avx512(float* cr, const float* t, int64_t cols,
                                                                              float alpha, float beta, bool first) {
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  for (int64_t j = 0; j < cols; j += 16) {
    const __mmask16 live = cols - j >= 16 ? 0xffff : static_cast<__mmask16>((1u << (cols - j)) - 1);
    const __m512 prod = _mm512_mul_ps(va, _mm512_maskz_loadu_ps(live, t + j));
    __m512 out;
    if (!first) out = _mm512_add_ps(_mm512_maskz_loadu_ps(live, cr + j), prod);
    else if (beta == 0.0f) out = prod;
    else out = _mm512_add_ps(prod, _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(live, cr + j)));
    _mm512_mask_storeu_ps(cr + j, live, out);
  }
}

/** fp32 -> bf16 bits of 16 lanes, round to nearest even, NaN kept quiet: f32_to_bf16 in vector form. */
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline __m256i bf16_round_avx512(__m512 x) {
  const __m512i u = _mm512_castps_si512(x);
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                                _mm512_set1_epi32(0x7f800000));
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), odd)), 16);
  r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40)));
  return _mm512_cvtepi32_epi16(r);
}

__attribute__((target("avx512f,avx512bw,avx512vl"))) void store_row_bf16_avx512(uint16_t* cr, const float* sum,
                                                                               int64_t cols, float alpha, float beta) {
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  for (int64_t j = 0; j < cols; j += 16) {
    const __mmask16 live = cols - j >= 16 ? 0xffff : static_cast<__mmask16>((1u << (cols - j)) - 1);
    __m512 out = _mm512_mul_ps(va, _mm512_maskz_loadu_ps(live, sum + j));
    if (beta != 0.0f) {
      const __m512i bits = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(live, cr + j));
      out = _mm512_add_ps(out, _mm512_mul_ps(vb, _mm512_castsi512_ps(_mm512_slli_epi32(bits, 16))));
    }
    _mm256_mask_storeu_epi16(cr + j, live, bf16_round_avx512(out));
  }
}
#endif

/** Where tiles go: C directly (fp32 C, or one k block), or fp32 accumulators rounded into a 16-bit C at the end. */
struct Epilogue {
  void* c;
  DType cdt;
  int64_t ldc;  // elements between rows of C
  float alpha, beta;
  float* acc;  // [m, nc] of the current column block, or null
  int64_t acc_ld;
  int64_t jc;
  bool avx512;

  void store(const float* tile, int nr, int64_t rows, int64_t cols, int64_t i0, int64_t j0, bool first, bool last) const {
    for (int64_t i = 0; i < rows; ++i) {
      const float* t = tile + i * nr;
      const int64_t at = (i0 + i) * ldc + j0;
      if (cdt == DType::F32) {
        float* cr = static_cast<float*>(c) + at;
#ifdef BADAM_ENGINE_X86
        if (avx512) {
          store_row_f32_avx512(cr, t, cols, alpha, beta, first);
          continue;
        }
#endif
        store_row_f32_portable(cr, t, cols, alpha, beta, first);
        continue;
      }
      const float* sum = t;
      if (acc != nullptr) {
        float* ar = acc + (i0 + i) * acc_ld + (j0 - jc);
        if (first) std::memcpy(ar, t, static_cast<size_t>(cols) * sizeof(float));
        else for (int64_t j = 0; j < cols; ++j) ar[j] += t[j];
        if (!last) continue;
        sum = ar;
      }
#ifdef BADAM_ENGINE_X86
      if (avx512 && cdt == DType::BF16) {
        store_row_bf16_avx512(static_cast<uint16_t*>(c) + at, sum, cols, alpha, beta);
        continue;
      }
#endif
      store_row_16_portable(c, cdt, at, sum, cols, alpha, beta);
    }
  }
};

/** C = beta C over m rows of n elements, rows ldc apart (beta 0 never reads C). */
void scale_c(void* c, DType cdt, int64_t m, int64_t n, int64_t ldc, float beta) {
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t j = 0; j < n; ++j) {
      const size_t i = static_cast<size_t>(r * ldc + j);
      store_from_f32(c, cdt, i, beta == 0.0f ? 0.0f : beta * load_as_f32(c, cdt, i));
    }
  }
}

}  // namespace

const char* gemm_kernel_name(Isa isa, DType ab) { return kernel_for(isa, ab).name; }

void gemm(Isa isa, const void* a, const void* b, void* c, DType ab, DType cdt, int m_, int n_, int k_, bool trans_a,
          bool trans_b, float alpha, float beta, const ref::GemmLayout& ld) {
  const int64_t m = m_, n = n_, k = k_;
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {  // an empty sum: C = beta C
    scale_c(c, cdt, m, n, ld.ldc, beta);
    return;
  }
  const Kernel& ker = kernel_for(isa, ab);
  const Operand A{a, ab, ld.lda, trans_a};
  const Operand B{b, ab, ld.ldb, trans_b};
  // k in equal blocks of at most 2048 (pairs) or 1024 (fp32): a B micro-panel stays in L2.
  const int64_t kc_limit = ker.pairs ? 2048 : 1024;
  const int64_t k_blocks = (k + kc_limit - 1) / kc_limit;
  int64_t kc_max = (k + k_blocks - 1) / k_blocks;
  if (ker.pairs) kc_max += kc_max % 2;
  Plan plan{m, n, k, kc_max};
  plan.mc = ker.mr * std::max<int64_t>(1, 96 / ker.mr);
  const int mr = ker.mr, nr = ker.nr;
  const bool need_acc = cdt != DType::F32 && k > kc_max;
  thread_local std::vector<uint32_t> b_buffer;
  thread_local std::vector<float> acc_buffer;
  const int64_t unit_bytes_per_k = ker.pairs ? 2 : 4;  // bytes of one k of one column in a panel
  (void)unit_bytes_per_k;
  const int64_t units_max = ker.pairs ? kc_max / 2 : kc_max;
  const int64_t nc_cap = std::min(plan.nc, (n + nr - 1) / nr * nr);
  uint32_t* bpack = scratch(b_buffer, static_cast<size_t>(units_max * nc_cap));
  float* acc = need_acc ? scratch(acc_buffer, static_cast<size_t>(m * std::min(plan.nc, n))) : nullptr;

  for (int64_t jc = 0; jc < n; jc += plan.nc) {
    const int64_t nc = std::min(plan.nc, n - jc);
    const Epilogue out{c, cdt, ld.ldc, alpha, beta, acc, std::min(plan.nc, n), jc, isa >= Isa::Avx512};
    for (int64_t pc = 0; pc < k; pc += kc_max) {
      const int64_t kc = std::min(kc_max, k - pc);
      const int64_t units = ker.pairs ? (kc + 1) / 2 : kc;
      const bool first = pc == 0, last = pc + kc >= k;
      // op(B)[pc .. pc + kc, jc .. jc + nc] as panels of nr columns: op(B)^T's rows are B's columns.
      const Operand Bt{B.data, B.dtype, B.ld, !B.trans};
      const int64_t panels = (nc + nr - 1) / nr;
      parallel_range(panels, 1, [&](int64_t p0, int64_t p1) {
        const int64_t cols = std::min(nc - p0 * nr, (p1 - p0) * nr);
        if (ker.pairs) pack_pairs(Bt, jc + p0 * nr, cols, pc, kc, nr, bpack + p0 * units * nr);
        else pack_f32(Bt, jc + p0 * nr, cols, pc, kc, nr, reinterpret_cast<float*>(bpack) + p0 * units * nr);
      });
      const int64_t row_blocks = (m + plan.mc - 1) / plan.mc;
      const int64_t col_blocks = (nc + plan.nsub - 1) / plan.nsub;
      parallel_for(row_blocks * col_blocks, [&](int64_t task) {
        thread_local std::vector<uint32_t> a_buffer;
        thread_local std::vector<float> tile_buffer;
        const int64_t ic = (task / col_blocks) * plan.mc;
        const int64_t js = (task % col_blocks) * plan.nsub;
        const int64_t mc = std::min(plan.mc, m - ic);
        const int64_t cols_end = std::min(js + plan.nsub, nc);
        const int64_t a_panels = (mc + mr - 1) / mr;
        uint32_t* apack = scratch(a_buffer, static_cast<size_t>(a_panels * mr * units));
        float* tile = scratch(tile_buffer, static_cast<size_t>(mr * nr));
        if (ker.pairs) pack_pairs(A, ic, mc, pc, kc, mr, apack);
        else pack_f32(A, ic, mc, pc, kc, mr, reinterpret_cast<float*>(apack));
        for (int64_t jr = js; jr < cols_end; jr += nr) {
          const uint32_t* bp = bpack + (jr / nr) * units * nr;
          for (int64_t ir = 0; ir < mc; ir += mr) {
            ker.run(units, apack + (ir / mr) * units * mr, bp, tile);
            out.store(tile, nr, std::min<int64_t>(mr, mc - ir), std::min<int64_t>(nr, cols_end - jr), ic + ir, jc + jr, first,
                      last);
          }
        }
      });
    }
  }
}

}  // namespace badam::engine
