// The CUDA Llama kernels (native/*_kernels.cu and attention*.cu, run by the emulator in cuda_runtime.h) against
// the CPU references (llama_reference.cc) on the same random inputs, outputs poisoned with NaN first: the shapes
// are chosen to hit partial tiles, head dims that are not multiples of 32, GQA groups (split and not), padding,
// an empty row, strided q / k / v rows (one fused projection) and 16-byte and element-wise paths. Prints a line
// per output and exits 1 when one is off. Built and run by test/cuda-emulation.test.ts:
//
//   check [--shared-optin BYTES] [--only attention]
//
// --shared-optin is the device's opt-in shared memory per block (default 227 KiB, an H100's; 101376 is the
// 99 KiB of sm_86 / sm_89 cards, where the tensor-core attention takes 32-key tiles at head dim 128).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "attention_common.cuh"  // attention_tc_key_tile: which walked tile the dispatcher takes
#include "llama_kernels.h"
#include "llama_reference.h"

namespace {

using badam::DType;
namespace ref = badam::ref;
namespace gpu = badam::cuda_llama;

int failures = 0;
uint32_t seed = 12345;

std::vector<float> random_values(size_t n, float scale = 1.0f) {
  std::vector<float> out(n);
  for (float& x : out) {
    seed ^= seed << 13;
    seed ^= seed >> 17;
    seed ^= seed << 5;
    x = (static_cast<float>(seed) / 4294967296.0f * 2.0f - 1.0f) * scale;
  }
  return out;
}

/** A buffer of n elements of `dtype`, from fp32 values (or NaN poison). */
struct Buffer {
  DType dtype;
  std::vector<uint8_t> bytes;
  Buffer(DType t, const std::vector<float>& values) : dtype(t), bytes(values.size() * badam::dtype_size(t)) {
    for (size_t i = 0; i < values.size(); i++) badam::store_from_f32(bytes.data(), t, i, values[i]);
  }
  static Buffer poison(DType t, size_t n) { return Buffer(t, std::vector<float>(n, std::numeric_limits<float>::quiet_NaN())); }
  void* data() { return bytes.data(); }
  float* f32() { return reinterpret_cast<float*>(bytes.data()); }
  size_t size() const { return bytes.size() / badam::dtype_size(dtype); }
  float at(size_t i) const { return badam::load_as_f32(bytes.data(), dtype, i); }
};

void check(const std::string& what, const Buffer& got, const Buffer& want, double threshold, double floor = 1e-3) {
  double worst = 0;
  for (size_t i = 0; i < want.size(); i++) {
    const double e = std::fabs(static_cast<double>(got.at(i)) - want.at(i)) / std::max(std::fabs(static_cast<double>(want.at(i))), floor);
    if (!(e <= worst)) worst = std::isnan(e) ? INFINITY : e;
  }
  const bool ok = worst <= threshold;
  if (!ok) failures++;
  std::printf("%s %-90s max rel err %.2e (<= %.1e)\n", ok ? "ok  " : "FAIL", what.c_str(), worst, threshold);
}

const double kBf16 = 1.0 / 128;

void check_elementwise() {
  const size_t rows = 37, cols = 304, n = rows * cols;  // cols a multiple of 8: the 16-byte paths of bf16
  const auto a = random_values(n, 4), b = random_values(n, 2), c = random_values(n);
  const auto gate_up = random_values(2 * n, 4);
  for (DType t : {DType::F32, DType::BF16}) {
    const std::string dt = badam::dtype_name(t);
    const double tol = t == DType::F32 ? 1e-6 : kBf16;
    Buffer ga(t, a), gb(t, b), gc(t, c), gu(t, gate_up);
    {
      Buffer want = Buffer::poison(t, n), got = Buffer::poison(t, n);
      ref::swiglu(gu.data(), t, want.data(), t, rows, cols);
      gpu::swiglu(gu.data(), t, got.data(), t, rows, cols, nullptr);
      check("swiglu " + dt + ", fused [gate | up] rows", got, want, tol);
      Buffer wd = Buffer::poison(t, 2 * n), gd = Buffer::poison(t, 2 * n);
      ref::swiglu_backward(gu.data(), t, gc.data(), t, wd.data(), t, rows, cols);
      gpu::swiglu_backward(gu.data(), t, gc.data(), t, gd.data(), t, rows, cols, nullptr);
      check("swigluBackward dGateUp " + dt, gd, wd, tol);
      Buffer inplace = gu;  // dGateUp written over gateUp
      gpu::swiglu_backward(inplace.data(), t, gc.data(), t, inplace.data(), t, rows, cols, nullptr);
      check("swigluBackward dGateUp " + dt + ", in place over gateUp", inplace, wd, tol);
    }
    {
      Buffer want = Buffer::poison(t, n), got = Buffer::poison(t, n);
      ref::add(ga.data(), t, gb.data(), t, want.data(), t, n);
      gpu::add(ga.data(), t, gb.data(), t, got.data(), t, n, nullptr);
      check("add " + dt, got, want, 0);
      Buffer odd_w = Buffer::poison(t, n - 3), odd_g = Buffer::poison(t, n - 3);  // not a multiple of 8
      ref::add(ga.data(), t, gb.data(), t, odd_w.data(), t, n - 3);
      gpu::add(ga.data(), t, gb.data(), t, odd_g.data(), t, n - 3, nullptr);
      check("add " + dt + ", n not a multiple of 8", odd_g, odd_w, 0);
      Buffer bias(DType::F32, random_values(cols));
      Buffer xw(t, a), xg(t, a);
      ref::add_bias(xw.data(), t, bias.data(), DType::F32, n, cols);
      gpu::add_bias(xg.data(), t, bias.data(), DType::F32, n, cols, nullptr);
      check("addBias " + dt, xg, xw, 0);
      Buffer dw(DType::F32, random_values(cols)), dg = dw;
      ref::bias_backward(gc.data(), t, dw.f32(), rows, cols, cols);
      std::vector<float> workspace(ref::column_sum_workspace(rows, cols), std::numeric_limits<float>::quiet_NaN());
      gpu::bias_backward(gc.data(), t, dg.f32(), rows, cols, cols, workspace.data(), nullptr);
      check("biasBackward " + dt, dg, dw, 1e-4, 1e-1);  // rows summed before, not after, adding
      // The middle 100 columns of each row: one bias of a fused projection.
      const size_t first = 100, width = 100;
      Buffer sw(DType::F32, random_values(width)), sg = sw;
      ref::bias_backward(static_cast<const uint8_t*>(gc.data()) + first * badam::dtype_size(t), t, sw.f32(), rows, width, cols);
      std::vector<float> ws(ref::column_sum_workspace(rows, width), std::numeric_limits<float>::quiet_NaN());
      gpu::bias_backward(static_cast<const uint8_t*>(gc.data()) + first * badam::dtype_size(t), t, sg.f32(), rows, width, cols,
                         ws.data(), nullptr);
      check("biasBackward " + dt + ", columns 100..199 of rows of 304", sg, sw, 1e-4, 1e-1);
    }
  }
}

void check_embedding_norm_rope() {
  const size_t tokens = 19, hidden = 300, vocab = 23;
  std::vector<int32_t> ids(tokens);
  for (size_t i = 0; i < tokens; i++) ids[i] = static_cast<int32_t>((i * 7) % (vocab + 2)) - 1;  // -1 and vocab: skipped
  Buffer table(DType::BF16, random_values(vocab * hidden));
  Buffer want = Buffer::poison(DType::F32, tokens * hidden), got = Buffer::poison(DType::F32, tokens * hidden);
  ref::embedding(table.data(), DType::BF16, ids.data(), want.data(), DType::F32, tokens, vocab, hidden);
  gpu::embedding(table.data(), DType::BF16, ids.data(), got.data(), DType::F32, tokens, vocab, hidden, nullptr);
  check("embedding bf16 table -> fp32, ids out of range", got, want, 0);
  Buffer d_out(DType::BF16, random_values(tokens * hidden));
  Buffer tw(DType::F32, random_values(vocab * hidden)), tg = tw;
  ref::embedding_backward(d_out.data(), DType::BF16, ids.data(), tw.f32(), tokens, vocab, hidden);
  gpu::embedding_backward(d_out.data(), DType::BF16, ids.data(), tg.f32(), tokens, vocab, hidden, nullptr);
  check("embeddingBackward repeated ids", tg, tw, 1e-6);

  for (DType t : {DType::F32, DType::BF16}) {
    const std::string dt = badam::dtype_name(t);
    Buffer x(t, random_values(tokens * hidden, 3)), w(t, random_values(hidden)), g(t, random_values(tokens * hidden));
    for (size_t width : {hidden, size_t{296}}) {  // 300 element-wise, 296 (a multiple of 8) 16 bytes at a time
      const size_t m = tokens * width;
      Buffer xa(t, random_values(m, 3)), delta(t, random_values(m)), wa(t, random_values(width));
      Buffer sw = Buffer::poison(t, m), ow = Buffer::poison(t, m), sg = Buffer::poison(t, m), og = Buffer::poison(t, m);
      Buffer rw = Buffer::poison(DType::F32, tokens), rg = Buffer::poison(DType::F32, tokens);
      ref::add_rms_norm(xa.data(), delta.data(), sw.data(), t, wa.data(), t, ow.data(), rw.f32(), tokens, width, 1e-5f);
      gpu::add_rms_norm(xa.data(), delta.data(), sg.data(), t, wa.data(), t, og.data(), rg.f32(), tokens, width, 1e-5f, nullptr);
      const std::string shape = " [" + std::to_string(tokens) + ", " + std::to_string(width) + "]";
      check("addRmsNorm sum " + dt + shape, sg, sw, 0);
      check("addRmsNorm out " + dt + shape, og, ow, t == DType::F32 ? 1e-5 : 2 * kBf16);
      check("addRmsNorm rstd " + dt + shape, rg, rw, 1e-6);
      Buffer nw = Buffer::poison(t, m), ng = Buffer::poison(t, m);
      ref::rms_norm(xa.data(), t, wa.data(), t, nw.data(), t, rw.f32(), tokens, width, 1e-5f);
      gpu::rms_norm(xa.data(), t, wa.data(), t, ng.data(), t, rg.f32(), tokens, width, 1e-5f, nullptr);
      check("rmsNorm out " + dt + shape, ng, nw, t == DType::F32 ? 1e-5 : 2 * kBf16);
    }
    Buffer in_place(t, random_values(tokens * hidden, 3)), delta(t, random_values(tokens * hidden));
    Buffer expected = Buffer::poison(t, tokens * hidden), normed = Buffer::poison(t, tokens * hidden);
    std::vector<float> rstd(tokens);
    ref::add_rms_norm(in_place.data(), delta.data(), expected.data(), t, w.data(), t, normed.data(), rstd.data(), tokens, hidden,
                      1e-5f);
    gpu::add_rms_norm(in_place.data(), delta.data(), in_place.data(), t, w.data(), t, normed.data(), rstd.data(), tokens, hidden,
                      1e-5f, nullptr);
    check("addRmsNorm " + dt + ", sum over x", in_place, expected, 0);
    Buffer ow = Buffer::poison(t, tokens * hidden), og = Buffer::poison(t, tokens * hidden);
    Buffer rw = Buffer::poison(DType::F32, tokens), rg = Buffer::poison(DType::F32, tokens);
    ref::rms_norm(x.data(), t, w.data(), t, ow.data(), t, rw.f32(), tokens, hidden, 1e-5f);
    gpu::rms_norm(x.data(), t, w.data(), t, og.data(), t, rg.f32(), tokens, hidden, 1e-5f, nullptr);
    check("rmsNorm out " + dt, og, ow, t == DType::F32 ? 1e-5 : 2 * kBf16);
    check("rmsNorm rstd " + dt, rg, rw, 1e-6);
    for (bool accumulate : {false, true}) {
      Buffer dxw(t, random_values(tokens * hidden)), dxg = dxw;
      Buffer dww(DType::F32, random_values(hidden)), dwg = dww;
      ref::rms_norm_backward(g.data(), t, x.data(), t, w.data(), t, rw.f32(), dxw.data(), t, dww.f32(), tokens, hidden, accumulate);
      std::vector<float> workspace(ref::column_sum_workspace(tokens, hidden), std::numeric_limits<float>::quiet_NaN());
      gpu::rms_norm_backward(g.data(), t, x.data(), t, w.data(), t, rw.f32(), dxg.data(), t, dwg.f32(), tokens, hidden, accumulate,
                             workspace.data(), nullptr);
      const std::string how = accumulate ? " (dx +=)" : " (dx =)";
      check("rmsNormBackward dx " + dt + how, dxg, dxw, t == DType::F32 ? 1e-5 : 2 * kBf16, 1e-2);
      check("rmsNormBackward dWeight " + dt + how, dwg, dww, 1e-4, 1e-2);
    }
  }

  const int seq_len = 7, heads = 3, head_dim = 40, max_pos = 9;
  const size_t n = 2 * seq_len;
  Buffer cos(DType::F32, random_values(max_pos * head_dim / 2)), sin(DType::F32, random_values(max_pos * head_dim / 2));
  for (bool inverse : {false, true}) {
    Buffer xw(DType::BF16, random_values(n * heads * head_dim)), xg = xw;
    ref::rope(xw.data(), DType::BF16, cos.f32(), sin.f32(), n, seq_len, heads, head_dim, inverse, heads * head_dim);
    gpu::rope(xg.data(), DType::BF16, cos.f32(), sin.f32(), n, seq_len, heads, head_dim, inverse, heads * head_dim, nullptr);
    check(std::string("rope bf16, inverse ") + (inverse ? "true" : "false"), xg, xw, 0);
    // q (3 heads) and k (2 heads) of a fused [n, (3 + 2 + 2) * d] projection in one pass; v is left alone.
    const size_t stride = 7 * head_dim;
    Buffer fw(DType::BF16, random_values(n * stride)), fg = fw;
    ref::rope(fw.data(), DType::BF16, cos.f32(), sin.f32(), n, seq_len, 5, head_dim, inverse, stride);
    gpu::rope(fg.data(), DType::BF16, cos.f32(), sin.f32(), n, seq_len, 5, head_dim, inverse, stride, nullptr);
    check(std::string("rope bf16, q and k of fused rows, inverse ") + (inverse ? "true" : "false"), fg, fw, 0);
  }
}

/** dBias and RMSNorm's dWeight over rows that span several chunks of the two-stage column sums, the last one
 * partial, up to the chunk cap (rows > 64 * 64), with column strips that end early (cols not a multiple of 32). */
void check_column_sums() {
  for (const size_t rows : {size_t{300}, size_t{5000}}) {
    const size_t cols = 70, n = rows * cols;
    const std::string shape = " [" + std::to_string(rows) + ", " + std::to_string(cols) + "]";
    Buffer d_out(DType::BF16, random_values(n)), x(DType::BF16, random_values(n, 3));
    Buffer rstd(DType::F32, random_values(rows, 0.5f));
    std::vector<float> workspace(ref::column_sum_workspace(rows, cols), std::numeric_limits<float>::quiet_NaN());
    Buffer bw(DType::F32, random_values(cols)), bg = bw;
    ref::bias_backward(d_out.data(), DType::BF16, bw.f32(), rows, cols, cols);
    gpu::bias_backward(d_out.data(), DType::BF16, bg.f32(), rows, cols, cols, workspace.data(), nullptr);
    check("biasBackward bf16, chunked rows" + shape, bg, bw, 1e-4, 1);
    if (rows > 1000) continue;  // RMSNorm's dWeight takes the same column sums; its dx kernel is a block per row
    Buffer dxw = Buffer::poison(DType::BF16, n), dxg = Buffer::poison(DType::BF16, n), w(DType::BF16, random_values(cols));
    Buffer ww(DType::F32, random_values(cols)), wg = ww;
    ref::rms_norm_backward(d_out.data(), DType::BF16, x.data(), DType::BF16, w.data(), DType::BF16, rstd.f32(), dxw.data(),
                           DType::BF16, ww.f32(), rows, cols, false);
    gpu::rms_norm_backward(d_out.data(), DType::BF16, x.data(), DType::BF16, w.data(), DType::BF16, rstd.f32(), dxg.data(),
                           DType::BF16, wg.f32(), rows, cols, false, workspace.data(), nullptr);
    check("rmsNormBackward dWeight bf16, chunked rows" + shape, wg, ww, 1e-4, 1);
  }
}

void check_cross_entropy_argmax_sum() {
  const size_t rows = 5, vocab = 3001;  // not a multiple of any block size
  const std::vector<int32_t> labels = {7, -100, 3000, 0, 1234};
  const auto logits = random_values(rows * vocab, 8);
  for (DType t : {DType::F32, DType::BF16}) {
    const std::string dt = badam::dtype_name(t);
    for (float scale : {0.0f, 0.2f}) {
      Buffer lw(t, logits), lg(t, logits);
      Buffer ww = Buffer::poison(DType::F32, rows), wg = Buffer::poison(DType::F32, rows);
      ref::cross_entropy(lw.data(), t, labels.data(), ww.f32(), rows, vocab, scale);
      gpu::cross_entropy(lg.data(), t, labels.data(), wg.f32(), rows, vocab, scale, nullptr);
      const std::string how = scale == 0.0f ? ", loss only" : ", gradient in place";
      check("crossEntropy losses " + dt + how, wg, ww, 1e-5);
      check("crossEntropy logits " + dt + how, lg, lw, t == DType::F32 ? 1e-5 : kBf16, 1e-6);
    }
  }
  Buffer x(DType::BF16, logits);
  std::vector<int32_t> aw(rows, -1), ag(rows, -2);
  ref::argmax_rows(x.data(), DType::BF16, aw.data(), rows, vocab);
  gpu::argmax_rows(x.data(), DType::BF16, ag.data(), rows, vocab, nullptr);
  const bool same = aw == ag;
  if (!same) failures++;
  std::printf("%s argmaxRows bf16 (ties likely in bf16)\n", same ? "ok  " : "FAIL");
  std::vector<double> partials(65);
  Buffer xs(DType::F32, logits);
  const double want = ref::sum(xs.data(), DType::F32, xs.size());
  const double got = gpu::sum(xs.data(), DType::F32, xs.size(), partials.data(), 64, nullptr);
  const bool sum_ok = std::fabs(got - want) <= 1e-9 * std::max(1.0, std::fabs(want));
  if (!sum_ok) failures++;
  std::printf("%s sum float32: %.10g vs %.10g\n", sum_ok ? "ok  " : "FAIL", got, want);
}

/** Empty inputs (no rows, no tokens) launch nothing: an empty grid would be a launch error on a GPU, and is one in
 * the emulator. Every launcher with a grid sized by rows or tokens, called with none. */
void check_empty_launches() {
  float f = 0;
  int32_t i = 0;
  std::vector<float> workspace(64);
  gpu::rms_norm(&f, DType::F32, &f, DType::F32, &f, DType::F32, &f, 0, 8, 1e-5f, nullptr);
  gpu::rms_norm_backward(&f, DType::F32, &f, DType::F32, &f, DType::F32, &f, &f, DType::F32, &f, 0, 8, false,
                         workspace.data(), nullptr);
  gpu::cross_entropy(&f, DType::F32, &i, &f, 0, 8, 1.0f, nullptr);
  gpu::argmax_rows(&f, DType::F32, &i, 0, 8, nullptr);
  gpu::embedding(&f, DType::F32, &i, &f, DType::F32, 0, 8, 8, nullptr);
  gpu::embedding_backward(&f, DType::F32, &i, &f, 0, 8, 8, nullptr);
  gpu::add_rms_norm(&f, &f, &f, DType::F32, &f, DType::F32, &f, &f, 0, 8, 1e-5f, nullptr);
  gpu::rope(&f, DType::F32, &f, &f, 0, 1, 1, 2, false, 2, nullptr);
  gpu::swiglu(&f, DType::F32, &f, DType::F32, 0, 8, nullptr);
  gpu::swiglu_backward(&f, DType::F32, &f, DType::F32, &f, DType::F32, 0, 8, nullptr);
  gpu::add(&f, DType::F32, &f, DType::F32, &f, DType::F32, 0, nullptr);
  gpu::bias_backward(&f, DType::F32, &f, 0, 8, 8, workspace.data(), nullptr);
  for (DType t : {DType::F32, DType::BF16}) {
    const ref::AttentionDims none{1, 0, 2, 1, 64, 1, true, nullptr};
    gpu::attention(&f, &f, &f, &f, &f, t, none, nullptr);
    gpu::attention_backward(&f, &f, &f, &f, &f, &f, &f, &f, &f, &f, nullptr, t, none, nullptr);
  }
  std::printf("ok   empty inputs launch nothing (rmsNorm, crossEntropy, argmaxRows, attention, ...)\n");
}

struct AttentionCase {
  const char* name;
  DType dtype;
  int batch, seq_len, heads, kv_heads, head_dim;
  bool causal;
  std::vector<int32_t> lengths;  // empty: none
  bool fused;                    // q, k, v (and dq, dk, dv) as column blocks of one [N, Q + 2 KV] buffer
  std::vector<const char*> paths;  // BADAM_ATTENTION values to run: simt, auto (tensor cores where they apply), tc32
};

double rms(const Buffer& b) {
  double sum = 0;
  for (size_t i = 0; i < b.size(); i++) sum += static_cast<double>(b.at(i)) * b.at(i);
  return std::sqrt(sum / std::max<size_t>(b.size(), 1));
}

/** Element pointer `offset` elements into a buffer. */
void* at(Buffer& b, size_t offset) { return static_cast<uint8_t*>(b.data()) + offset * badam::dtype_size(b.dtype); }

/**
 * The GPU's attention against the reference, through the kernels BADAM_ATTENTION=`path` picks. Tensor cores
 * multiply 16-bit P and dS (rounded, as FlashAttention does), so their errors are measured against the larger
 * of the element and the tensor's rms: a near-zero element of a sum of many terms is not held to its own
 * relative precision. With `fused`, q / k / v and dq / dk / dv are the column blocks of one buffer each, as a
 * fused qkv projection leaves them.
 */
void check_attention(const AttentionCase& c, const std::string& path) {
  setenv("BADAM_ATTENTION", path.c_str(), 1);
  const size_t tokens = static_cast<size_t>(c.batch) * c.seq_len;
  const size_t q_row = static_cast<size_t>(c.heads) * c.head_dim, kv_row = static_cast<size_t>(c.kv_heads) * c.head_dim;
  const size_t stride = q_row + 2 * kv_row;
  ref::AttentionDims d{c.batch, c.seq_len, c.heads, c.kv_heads, c.head_dim, 1.0f / std::sqrt(static_cast<float>(c.head_dim)),
                       c.causal, c.lengths.empty() ? nullptr : c.lengths.data()};
  if (c.fused) {
    d.q_stride = static_cast<int>(stride);
    d.kv_stride = static_cast<int>(stride);
  }
  const size_t rows = static_cast<size_t>(c.batch) * c.heads * c.seq_len;
  const DType t = c.dtype;
  // One buffer for q, k, v (fused) or three; the same for dq, dk, dv.
  const size_t qkv_n = tokens * stride;
  Buffer qkv(t, random_values(qkv_n, 2)), d_out(t, random_values(tokens * q_row));
  Buffer sq(t, random_values(tokens * q_row, 2)), sk(t, random_values(tokens * kv_row, 2)), sv(t, random_values(tokens * kv_row));
  const void* q = c.fused ? at(qkv, 0) : sq.data();
  const void* k = c.fused ? at(qkv, q_row) : sk.data();
  const void* v = c.fused ? at(qkv, q_row + kv_row) : sv.data();
  Buffer ow = Buffer::poison(t, tokens * q_row), og = Buffer::poison(t, tokens * q_row);
  Buffer lw = Buffer::poison(DType::F32, rows), lg = Buffer::poison(DType::F32, rows);
  ref::attention(q, k, v, ow.data(), lw.f32(), t, d);
  gpu::attention(q, k, v, og.data(), lg.f32(), t, d, nullptr);
  const bool tensor_cores = path != "simt" && t != DType::F32 && (c.head_dim == 64 || c.head_dim == 128);
  const int key_tile = path == "tc32" ? 32 : gpu::attention_tc_key_tile(c.head_dim, emu::state().shared_optin);
  const std::string name = std::string(c.name) + (c.fused ? ", fused qkv rows " : " ") + badam::dtype_name(t) + " [" +
                           (tensor_cores ? "tensor cores, " + std::to_string(key_tile) + "-key tiles" : "simt") + "]";
  // Tensor cores: bf16 P and dS cost about two bf16 steps of the result; fp16's 3 more bits far less.
  const double tc_tol = t == DType::F16 ? 1.0 / 256 : 4 * kBf16;
  const double out_tol = t == DType::F32 ? 1e-4 : tensor_cores ? tc_tol / 2 : kBf16;
  check("attention out, " + name, og, ow, out_tol, tensor_cores ? rms(ow) : 1e-3);
  check("attention lse, " + name, lg, lw, tensor_cores ? 1e-4 : 1e-5);
  // The backward from the reference's forward on both sides, so only the backward kernels differ.
  Buffer gw = Buffer::poison(t, c.fused ? qkv_n : tokens * q_row), gg = gw;  // dq, or dq | dk | dv rows
  Buffer dkw = Buffer::poison(t, tokens * kv_row), dkg = dkw, dvw = dkw, dvg = dkw;
  void* dq_w = gw.data();
  void* dq_g = gg.data();
  void* dk_w = c.fused ? at(gw, q_row) : dkw.data();
  void* dk_g = c.fused ? at(gg, q_row) : dkg.data();
  void* dv_w = c.fused ? at(gw, q_row + kv_row) : dvw.data();
  void* dv_g = c.fused ? at(gg, q_row + kv_row) : dvg.data();
  Buffer rw = Buffer::poison(DType::F32, rows), rg = Buffer::poison(DType::F32, rows);
  std::vector<float> partials(ref::attention_backward_partial_floats(d, t), std::numeric_limits<float>::quiet_NaN());
  ref::attention_backward(q, k, v, ow.data(), d_out.data(), lw.f32(), dq_w, dk_w, dv_w, rw.f32(), t, d);
  gpu::attention_backward(q, k, v, ow.data(), d_out.data(), lw.f32(), dq_g, dk_g, dv_g, rg.f32(),
                          partials.empty() ? nullptr : partials.data(), t, d, nullptr);
  const double tol = t == DType::F32 ? 1e-4 : tensor_cores ? tc_tol : 2 * kBf16;
  const std::string splits = tensor_cores ? ", dk / dv in " + std::to_string(ref::attention_dkv_splits(d)) + " split(s)" : "";
  check("attentionBackward D rows, " + name, rg, rw, 1e-4, 1e-2);
  if (c.fused) {
    check("attentionBackward dq | dk | dv, " + name + splits, gg, gw, tol, tensor_cores ? rms(gw) : 1e-2);
  } else {
    check("attentionBackward dq, " + name, gg, gw, tol, tensor_cores ? rms(gw) : 1e-2);
    check("attentionBackward dk, " + name + splits, dkg, dkw, tol, tensor_cores ? rms(dkw) : 1e-2);
    check("attentionBackward dv, " + name + splits, dvg, dvw, tol, tensor_cores ? rms(dvw) : 1e-2);
  }
  unsetenv("BADAM_ATTENTION");
}

/** A misspelt BADAM_ATTENTION is an error that names the value, not a silent choice of kernels. */
void check_attention_choice_refused() {
  setenv("BADAM_ATTENTION", "tensorcores", 1);
  std::string message;
  try {
    gpu::attention(nullptr, nullptr, nullptr, nullptr, nullptr, DType::BF16, ref::AttentionDims{1, 1, 1, 1, 64, 1, true, nullptr},
                   nullptr);
  } catch (const std::invalid_argument& e) {
    message = e.what();
  }
  unsetenv("BADAM_ATTENTION");
  const bool refused = message.find("'tensorcores'") != std::string::npos;
  if (!refused) failures++;
  std::printf("%s BADAM_ATTENTION=tensorcores refused: %s\n", refused ? "ok  " : "FAIL", message.c_str());
}

void check_attention_cases() {
  const std::vector<AttentionCase> cases = {
      // SIMT: head dims not multiples of 32 or below it, partial 32-row tiles, fp32, strided rows, an empty row.
      {"batch 2, seq 45, 4 / 2 heads, d 40, lengths [45, 29]", DType::F32, 2, 45, 4, 2, 40, true, {45, 29}, true, {"auto"}},
      {"batch 1, seq 70, 2 / 1 heads, d 16, no lengths", DType::F32, 1, 70, 2, 1, 16, true, {}, false, {"auto"}},
      {"batch 2, seq 40, 2 / 2 heads, d 128, lengths [40, 0]", DType::BF16, 2, 40, 2, 2, 128, true, {40, 0}, false,
       {"simt", "auto"}},
      {"batch 1, seq 33, 4 / 1 heads, d 64, not causal, lengths [20]", DType::BF16, 1, 33, 4, 1, 64, false, {20}, false,
       {"simt", "auto", "tc32"}},
      // Tensor cores: partial 64-row tiles (70, 130), GQA 4 / 2 and 4 / 1 (dk / dv split over the group), padding,
      // fp16, fused qkv rows, both walked tiles.
      {"batch 2, seq 70, 4 / 2 heads, d 64, lengths [70, 37]", DType::BF16, 2, 70, 4, 2, 64, true, {70, 37}, true,
       {"auto", "tc32"}},
      {"batch 1, seq 130, 4 / 1 heads, d 128, lengths [100]", DType::BF16, 1, 130, 4, 1, 128, true, {100}, false, {"auto"}},
      {"batch 1, seq 70, 4 / 1 heads, d 128, not causal, no lengths", DType::F16, 1, 70, 4, 1, 128, false, {}, true,
       {"auto", "tc32"}},
  };
  check_attention_choice_refused();
  for (const auto& c : cases)
    for (const char* path : c.paths) check_attention(c, path);
}

}  // namespace

int main(int argc, char** argv) {
  bool attention_only = false;
  for (int i = 1; i < argc; i++) {
    const std::string arg = argv[i];
    if (arg == "--shared-optin" && i + 1 < argc) {
      emu::set_shared_memory_optin(std::strtoul(argv[++i], nullptr, 10));
    } else if (arg == "--only" && i + 1 < argc && std::string(argv[i + 1]) == "attention") {
      attention_only = true;
      i++;
    } else {
      std::printf("FAIL usage: check [--shared-optin BYTES] [--only attention], got %s\n", arg.c_str());
      return 2;
    }
  }
  std::printf("emulated device: %zu bytes of opt-in shared memory per block\n", emu::state().shared_optin);
  try {
    if (!attention_only) {
      check_elementwise();
      check_embedding_norm_rope();
      check_cross_entropy_argmax_sum();
      check_column_sums();
      check_empty_launches();
    }
    check_attention_cases();
  } catch (const std::exception& e) {
    std::printf("FAIL %s\n", e.what());
    return 1;
  }
  std::printf("%s\n", failures == 0 ? "all emulated kernels match the references" : "some emulated kernels differ");
  return failures == 0 ? 0 : 1;
}
