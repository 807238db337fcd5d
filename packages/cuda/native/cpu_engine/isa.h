// Which instruction set the CPU engine's kernels run with: chosen once per device from what the CPU has
// (cpuid), or forced lower for tests and comparisons. The addon itself is compiled for plain x86-64, so it
// loads on any CPU; only functions compiled for a level (target attributes, #pragma GCC target) use its
// instructions, and they run only when the CPU has them.
#pragma once

#include <string>

namespace badam::engine {

enum class Isa : int {
  Generic = 0,     // portable C++ (the compiler's baseline vectors)
  Avx2 = 1,        // AVX2 + FMA: fp32 GEMM micro-kernel; the other kernels run the generic code
  Avx512 = 2,      // AVX-512 F/BW/DQ/VL: every kernel vectorised; 16-bit GEMM operands widened to fp32
  Avx512Bf16 = 3,  // plus AVX512_BF16: bf16 GEMMs multiply pairs with vdpbf16ps (fp32 accumulation)
};

/** The best level this CPU runs. */
Isa detect_isa();

/** "generic", "avx2", "avx512", "avx512-bf16". */
const char* isa_name(Isa isa);

/**
 * The level named by `name` ("auto" or empty: detect_isa()); throws std::invalid_argument naming the levels
 * when the name is unknown or the CPU lacks that level.
 */
Isa isa_from_name(const std::string& name);

}  // namespace badam::engine
