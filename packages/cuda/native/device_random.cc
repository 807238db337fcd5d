#include <algorithm>
#include <vector>

#include "device.h"
#include "random_normal.h"

namespace badam {

void Device::fill_normal(void* dst, DType dtype, size_t n, float mean, float std, uint64_t seed) {
  constexpr size_t kChunk = size_t{1} << 20;
  const size_t bytes = dtype_size(dtype);
  std::vector<uint8_t> staged(std::min(n, kChunk) * bytes);
  std::vector<float> values(std::min(n, kChunk));
  for (size_t begin = 0; begin < n; begin += kChunk) {
    const size_t len = std::min(kChunk, n - begin);
    normal_samples(seed, begin, begin + len, mean, std, values.data());
    for (size_t i = 0; i < len; i++) store_from_f32(staged.data(), dtype, i, values[i]);
    upload(static_cast<uint8_t*>(dst) + begin * bytes, staged.data(), len * bytes);
  }
}

}  // namespace badam
