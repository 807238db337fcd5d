// Normal samples from a counter-based generator: sample i of stream `seed` depends on (seed, i) only, so any
// device fills any range of a tensor, in any order, on any number of threads, with the same values. Used
// for Hugging Face's random initialisation of large models (normal(0, initializer_range)) in seconds.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

namespace badam {

/** SplitMix64's finaliser: a bijective 64-bit hash. */
inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/**
 * Samples 2p and 2p + 1 of the standard normal stream `seed`: Box-Muller on two 24-bit uniforms hashed from
 * (seed, p), the cosine and the sine (fp32).
 */
inline void normal_pair(uint64_t seed, uint64_t p, float& even, float& odd) {
  const uint64_t h = splitmix64(seed ^ splitmix64(p));
  const float u1 = (static_cast<float>(h >> 40) + 1.0f) * 0x1.0p-24f;                // (0, 1]
  const float u2 = static_cast<float>((h >> 16) & 0xffffffu) * 0x1.0p-24f;          // [0, 1)
  const float r = std::sqrt(-2.0f * std::log(u1));
  const float t = 6.28318530717958647f * u2;
  even = r * std::cos(t);
  odd = r * std::sin(t);
}

/** Sample i of the standard normal stream `seed` (see normal_pair). */
inline float normal_sample(uint64_t seed, uint64_t i) {
  float even, odd;
  normal_pair(seed, i >> 1, even, odd);
  return (i & 1) ? odd : even;
}

/** dst[i - begin] = mean + std * normal_sample(seed, i) for i in [begin, end), as fp32. */
inline void normal_samples(uint64_t seed, uint64_t begin, uint64_t end, float mean, float std, float* dst) {
  uint64_t i = begin;
  if (i < end && (i & 1)) {
    *dst++ = mean + std * normal_sample(seed, i);
    i++;
  }
  for (; i + 1 < end; i += 2) {
    float even, odd;
    normal_pair(seed, i >> 1, even, odd);
    *dst++ = mean + std * even;
    *dst++ = mean + std * odd;
  }
  if (i < end) *dst = mean + std * normal_sample(seed, i);
}

}  // namespace badam
