#include "isa.h"

#include <stdexcept>

namespace badam::engine {

Isa detect_isa() {
#if defined(__x86_64__) || defined(_M_X64)
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
                      __builtin_cpu_supports("fma");
  if (avx512 && __builtin_cpu_supports("avx512bf16")) return Isa::Avx512Bf16;
  if (avx512) return Isa::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::Avx2;
#endif
  return Isa::Generic;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Generic: return "generic";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
    case Isa::Avx512Bf16: return "avx512-bf16";
  }
  return "unknown";
}

Isa isa_from_name(const std::string& name) {
  const Isa best = detect_isa();
  if (name.empty() || name == "auto") return best;
  for (Isa isa : {Isa::Generic, Isa::Avx2, Isa::Avx512, Isa::Avx512Bf16}) {
    if (name != isa_name(isa)) continue;
    if (static_cast<int>(isa) > static_cast<int>(best))
      throw std::invalid_argument(std::string("instruction set ") + name + " is not available on this CPU (it runs up to " +
                                  isa_name(best) + "); pick a lower one or auto");
    return isa;
  }
  throw std::invalid_argument("instruction set must be auto, generic, avx2, avx512 or avx512-bf16, got " + name);
}

}  // namespace badam::engine
