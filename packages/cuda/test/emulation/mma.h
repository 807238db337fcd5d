// The emulator's <mma.h>: the WMMA API (nvcuda::wmma) for 16x16x16 tiles of bf16 / fp16 with fp32
// accumulators, enough to run the tensor-core attention (native/attention_tc.cu) on fibers.
//
// Model: every thread's fragment holds the WHOLE 16x16 tile (num_elements = 256; on a GPU a lane holds 8 of
// them in a layout the API does not name), so load / mma / fill act on the thread's full copy, and an
// element-wise loop over frag.num_elements applying the same op to every x[i] gives the same tile as on a
// GPU. Code that relies on which element a lane holds is not portable WMMA and is not emulated. mma_sync
// multiplies the 16-bit operands exactly (a bf16 or fp16 product fits in fp32) and adds in fp32, as the
// tensor cores do (their order of the k sum is unspecified; here it is k = 0..15).
//
// store_matrix_sync writes only this lane's share of the tile (element e by lane e % 32): on a GPU each lane
// stores its own elements, so another lane reads them only after a __syncwarp. A kernel that omits it reads
// the NaN poison here.
#pragma once

#include <cstring>
#include <type_traits>

#include "cuda_bf16.h"
#include "cuda_fp16.h"
#include "cuda_runtime.h"

namespace nvcuda::wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

inline float element_f32(float x) { return x; }
inline float element_f32(__nv_bfloat16 x) { return __bfloat162float(x); }
inline float element_f32(__half x) { return __half2float(x); }

/** The whole m x n (a: m x k, b: k x n) tile, row-major, in every thread. */
template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  static_assert(M == 16 && N == 16 && K == 16, "the emulator has 16x16x16 fragments only");
  static constexpr int num_elements = 256;
  T x[num_elements];
};

template <typename Use, typename T, typename Layout>
void fill_fragment(fragment<Use, 16, 16, 16, T, Layout>& f, T value) {
  for (T& e : f.x) e = value;
}

/** a or b from memory; row_major: element (r, c) at p[r * ldm + c], col_major: at p[c * ldm + r]. */
template <typename Use, typename T, typename Layout>
void load_matrix_sync(fragment<Use, 16, 16, 16, T, Layout>& f, const T* p, unsigned ldm) {
  for (int r = 0; r < 16; r++)
    for (int c = 0; c < 16; c++)
      f.x[r * 16 + c] = std::is_same_v<Layout, row_major> ? p[r * ldm + c] : p[c * ldm + r];
}

inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float>& f, const float* p, unsigned ldm, layout_t layout) {
  for (int r = 0; r < 16; r++)
    for (int c = 0; c < 16; c++) f.x[r * 16 + c] = layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
}

inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, float>& f, unsigned ldm, layout_t layout) {
  const int lane = emu::current_thread().linear & 31;
  for (int e = lane; e < 256; e += 32) {
    const int r = e / 16, c = e % 16;
    (layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.x[e];
  }
}

/** d = a b + c, the 16-bit products exact in fp32, summed in fp32 (d may be c). */
template <typename T, typename LayoutA, typename LayoutB>
void mma_sync(fragment<accumulator, 16, 16, 16, float>& d, const fragment<matrix_a, 16, 16, 16, T, LayoutA>& a,
              const fragment<matrix_b, 16, 16, 16, T, LayoutB>& b, const fragment<accumulator, 16, 16, 16, float>& c) {
  float a32[256], b32[256];
  for (int e = 0; e < 256; e++) {
    a32[e] = element_f32(a.x[e]);
    b32[e] = element_f32(b.x[e]);
  }
  float out[256];
  for (int r = 0; r < 16; r++)
    for (int col = 0; col < 16; col++) {
      float acc = c.x[r * 16 + col];
      for (int k = 0; k < 16; k++) acc += a32[r * 16 + k] * b32[k * 16 + col];
      out[r * 16 + col] = acc;
    }
  std::memcpy(d.x, out, sizeof(out));
}

}  // namespace nvcuda::wmma
