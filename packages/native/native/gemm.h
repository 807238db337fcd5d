// Single-precision matrix multiply for BAdam's CPU path: C = op(A) op(B), row-major, overwriting C.
#pragma once
#include <cstdint>

namespace badam {

// op(A) is M x K, op(B) is K x N, C is M x N; lda/ldb/ldc are row strides in elements.
void sgemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, bool trans_a, const float* b,
           int64_t ldb, bool trans_b, float* c, int64_t ldc);

// The plain triple loop: the reference the optimized path is tested against.
void sgemm_reference(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, bool trans_a, const float* b,
                     int64_t ldb, bool trans_b, float* c, int64_t ldc);

// Which micro-kernel the CPU runs: "avx512", "avx2" or "scalar".
const char* sgemm_kernel_name();

// Threads used for large products (default: hardware threads; BADAM_THREADS overrides).
int sgemm_threads();
void set_sgemm_threads(int threads);

}  // namespace badam
