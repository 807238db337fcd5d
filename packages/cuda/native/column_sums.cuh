// Deterministic column sums for the CUDA kernels (RMSNorm's dWeight, dBias): private to the kernel files.
//
// out[c] += sum over rows r of term(r, c), for dWeight of RMSNorm and dBias: stage 1 splits the rows into
// column_chunks(rows) chunks and writes each chunk's sum per column into a workspace, stage 2 adds the chunks
// in order. The order of every addition depends only on (rows, cols), so results repeat bit for bit, and the
// rows are spread over (cols / 32) * chunks blocks instead of one thread per column walking all of them.
#pragma once

#include "kernel_common.cuh"
#include "llama_reference.h"

namespace badam::cuda_llama {
namespace {

constexpr int kColumnStrip = 32;    // columns of a stage-1 block: a warp's lanes, coalesced
constexpr int kColumnRowLanes = 8;  // rows of a chunk a stage-1 block reads at once

/** Chunks of rows (llama_reference.h's rule, which the bindings size the workspace by). */
size_t column_chunks(size_t rows) { return ref::column_sum_chunks(rows); }

// partials [chunks, cols] = per chunk of rows, the sum of term(r, c) over its rows (in order in each of the 8
// row lanes, then the 8 lanes in order). grid (ceil(cols / 32), chunks), block (32, 8).
template <typename Term>
__global__ void column_partial_sums_kernel(Term term, size_t rows, size_t cols, size_t rows_per_chunk, float* partials) {
  __shared__ float lane_sums[kColumnRowLanes][kColumnStrip];
  const size_t c = blockIdx.x * static_cast<size_t>(kColumnStrip) + threadIdx.x;
  const size_t r0 = blockIdx.y * rows_per_chunk, r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
  float acc = 0.0f;
  if (c < cols) {
    for (size_t r = r0 + threadIdx.y; r < r1; r += kColumnRowLanes) acc += term(r, c);
  }
  lane_sums[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    float sum = 0.0f;
    for (int lane = 0; lane < kColumnRowLanes; lane++) sum += lane_sums[lane][threadIdx.x];
    partials[blockIdx.y * cols + c] = sum;
  }
}

// out [cols] += the chunks' partial sums [chunks, cols], in chunk order; one thread per column.
__global__ void column_sums_kernel(const float* partials, size_t chunks, size_t cols, float* out) {
  GRID_STRIDE(c, cols) {
    float sum = 0.0f;
    for (size_t k = 0; k < chunks; k++) sum += partials[k * cols + c];
    out[c] += sum;
  }
}

/** out[c] += sum_r term(r, c) over rows x cols, through `workspace` (column_sum_workspace(rows, cols) floats). */
template <typename Term>
void add_column_sums(Term term, size_t rows, size_t cols, float* out, float* workspace, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;  // nothing to add (and no empty grid to launch)
  const size_t chunks = column_chunks(rows);
  const size_t rows_per_chunk = (rows + chunks - 1) / chunks;
  auto stage1 = column_partial_sums_kernel<Term>;
  stage1<<<dim3(static_cast<unsigned>((cols + kColumnStrip - 1) / kColumnStrip), static_cast<unsigned>(chunks)),
           dim3(kColumnStrip, kColumnRowLanes), 0, stream>>>(term, rows, cols, rows_per_chunk, workspace);
  LAUNCH_CHECK();
  column_sums_kernel<<<blocks_for(cols), kThreads, 0, stream>>>(workspace, chunks, cols, out);
  LAUNCH_CHECK();
}

}  // namespace
}  // namespace badam::cuda_llama
