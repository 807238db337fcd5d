// The emulator's <cuda_fp16.h>: __half as its raw 16 bits, converted with the rounding of dtype.h (round to
// nearest even, as __float2half_rn does).
#pragma once

#include <cstdint>

#include "dtype.h"

struct __half {
  uint16_t bits;
};

inline float __half2float(__half h) { return badam::f16_to_f32(h.bits); }
inline __half __float2half_rn(float x) { return __half{badam::f32_to_f16(x)}; }
