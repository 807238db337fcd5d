// The CPU engine's matrix product: C[m, n] = alpha op(A)[m, k] op(B)[k, n] + beta C, row-major with leading
// dimensions, the contract of ref::gemm (A and B of one dtype, C fp32 or 16-bit, fp32 accumulation, a 16-bit
// C rounded once, beta 0 never reads C). GotoBLAS-style blocking on the engine's thread pool; the operands
// are packed straight from their stored dtype, so a bf16 weight is never widened into a temporary copy of
// itself.
#pragma once

#include "../dtype.h"
#include "../reference.h"  // ref::GemmLayout
#include "isa.h"

namespace badam::engine {

/**
 * bf16 operands on Isa::Avx512Bf16 multiply pairs of bf16 with vdpbf16ps into fp32 accumulators (products of
 * bf16 are exact in fp32; the instruction treats subnormal inputs and results as zero); every other case
 * widens the operands to fp32 while packing and runs an fp32 FMA micro-kernel (AVX-512, AVX2 or portable).
 */
void gemm(Isa isa, const void* a, const void* b, void* c, DType ab, DType cdt, int m, int n, int k, bool trans_a,
          bool trans_b, float alpha, float beta, const ref::GemmLayout& ld);

/** What runs a GEMM of operand dtype `ab` at `isa`, e.g. "bf16 pairs (vdpbf16ps) 8x32" or "fp32 fma avx512 8x32". */
const char* gemm_kernel_name(Isa isa, DType ab);

}  // namespace badam::engine
