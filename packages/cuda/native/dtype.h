// Element types of device tensors and exact host conversions between them.
//
// bf16 and fp16 are stored as raw 16-bit patterns. Conversions from fp32 round to nearest, ties to even,
// the same rounding the GPU's __float2bfloat16_rn / __float2half_rn and @badam/core's roundToDType use.
#pragma once

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

namespace badam {

enum class DType : int { F32 = 0, BF16 = 1, F16 = 2, I32 = 3 };

inline size_t dtype_size(DType t) { return t == DType::BF16 || t == DType::F16 ? 2 : 4; }

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "float32";
    case DType::BF16: return "bfloat16";
    case DType::F16: return "float16";
    case DType::I32: return "int32";
  }
  return "unknown";
}

inline DType dtype_from_name(const std::string& name) {
  if (name == "float32") return DType::F32;
  if (name == "bfloat16") return DType::BF16;
  if (name == "float16") return DType::F16;
  if (name == "int32") return DType::I32;
  throw std::invalid_argument("dtype must be float32, bfloat16, float16 or int32, got " + name);
}

inline uint32_t f32_bits(float x) { uint32_t u; std::memcpy(&u, &x, 4); return u; }
inline float bits_f32(uint32_t u) { float x; std::memcpy(&x, &u, 4); return x; }

/** fp32 -> bf16, round to nearest even; NaN stays a (quiet) NaN. */
inline uint16_t f32_to_bf16(float x) {
  uint32_t u = f32_bits(x);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

inline float bf16_to_f32(uint16_t h) { return bits_f32(static_cast<uint32_t>(h) << 16); }

/** fp32 -> IEEE fp16, round to nearest even, subnormals kept, overflow to infinity. */
inline uint16_t f32_to_f16(float x) {
  uint32_t u = f32_bits(x);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t abs = u & 0x7fffffffu;
  if (abs >= 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520: rounds past the largest half
  if (abs < 0x38800000u) {  // below 2^-14: subnormal half (or zero)
    // value = abs * 2^24 in units of the smallest subnormal; round to nearest even.
    float scaled = bits_f32(abs) * 16777216.0f;  // exact: power-of-two scaling
    uint32_t q = static_cast<uint32_t>(scaled);
    float rem = scaled - static_cast<float>(q);
    if (rem > 0.5f || (rem == 0.5f && (q & 1u))) q += 1;
    return static_cast<uint16_t>(sign | q);
  }
  uint32_t mant = abs & 0x7fffffu;
  uint32_t exp = (abs >> 23) - 127 + 15;
  uint32_t half = (exp << 10) | (mant >> 13);
  uint32_t rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) half += 1;  // may carry into the exponent: correct
  return static_cast<uint16_t>(sign | half);
}

inline float f16_to_f32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    float v = static_cast<float>(mant) * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  if (exp == 31) return bits_f32(sign | 0x7f800000u | (mant << 13));
  return bits_f32(sign | ((exp - 15 + 127) << 23) | (mant << 13));
}

/** Rounds an fp32 value to what `t` holds, returned as fp32. */
inline float round_to(DType t, float x) {
  if (t == DType::BF16) return bf16_to_f32(f32_to_bf16(x));
  if (t == DType::F16) return f16_to_f32(f32_to_f16(x));
  return x;
}

/** Element `i` of a buffer of dtype `t` as fp32. */
inline float load_as_f32(const void* p, DType t, size_t i) {
  switch (t) {
    case DType::F32: return static_cast<const float*>(p)[i];
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::I32: return static_cast<float>(static_cast<const int32_t*>(p)[i]);
  }
  return 0;
}

/** Stores fp32 `x` as element `i` of a buffer of dtype `t`, rounding to nearest even. */
inline void store_from_f32(void* p, DType t, size_t i, float x) {
  switch (t) {
    case DType::F32: static_cast<float*>(p)[i] = x; break;
    case DType::BF16: static_cast<uint16_t*>(p)[i] = f32_to_bf16(x); break;
    case DType::F16: static_cast<uint16_t*>(p)[i] = f32_to_f16(x); break;
    case DType::I32: static_cast<int32_t*>(p)[i] = static_cast<int32_t>(x); break;
  }
}

}  // namespace badam
