// The emulator's <cuda_bf16.h>: __nv_bfloat16 as its raw 16 bits, converted with the rounding of dtype.h
// (round to nearest even, as __float2bfloat16_rn does).
#pragma once

#include <cstdint>

#include "dtype.h"

struct __nv_bfloat16 {
  uint16_t bits;
};

inline float __bfloat162float(__nv_bfloat16 h) { return badam::bf16_to_f32(h.bits); }
inline __nv_bfloat16 __float2bfloat16_rn(float x) { return __nv_bfloat16{badam::f32_to_bf16(x)}; }
