// The CUDA Llama kernels (native/*_kernels.cu and attention*.cu, run by the emulator in cuda_runtime.h) against the CPU references
// (llama_reference.cc) on the same random inputs, outputs poisoned with NaN first: the shapes are chosen to
// hit partial tiles, head dims that are not multiples of 32, GQA groups, padding and an empty row. Prints a
// line per output and exits 1 when one is off. Built and run by test/cuda-emulation.test.ts.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

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
  const size_t rows = 37, cols = 300, n = rows * cols;
  const auto a = random_values(n, 4), b = random_values(n, 2), c = random_values(n);
  for (DType t : {DType::F32, DType::BF16}) {
    const std::string dt = badam::dtype_name(t);
    const double tol = t == DType::F32 ? 1e-6 : kBf16;
    Buffer ga(t, a), gb(t, b), gc(t, c);
    {
      Buffer want = Buffer::poison(t, n), got = Buffer::poison(t, n);
      ref::swiglu(ga.data(), t, gb.data(), t, want.data(), t, n);
      gpu::swiglu(ga.data(), t, gb.data(), t, got.data(), t, n, nullptr);
      check("swiglu " + dt, got, want, tol);
      Buffer wg = Buffer::poison(t, n), wu = Buffer::poison(t, n), gg = Buffer::poison(t, n), gu = Buffer::poison(t, n);
      ref::swiglu_backward(ga.data(), t, gb.data(), t, gc.data(), t, wg.data(), t, wu.data(), t, n);
      gpu::swiglu_backward(ga.data(), t, gb.data(), t, gc.data(), t, gg.data(), t, gu.data(), t, n, nullptr);
      check("swigluBackward dGate " + dt, gg, wg, tol);
      check("swigluBackward dUp " + dt, gu, wu, tol);
    }
    {
      Buffer want = Buffer::poison(t, n), got = Buffer::poison(t, n);
      ref::add(ga.data(), t, gb.data(), t, want.data(), t, n);
      gpu::add(ga.data(), t, gb.data(), t, got.data(), t, n, nullptr);
      check("add " + dt, got, want, 0);
      Buffer bias(DType::F32, random_values(cols));
      Buffer xw(t, a), xg(t, a);
      ref::add_bias(xw.data(), t, bias.data(), DType::F32, n, cols);
      gpu::add_bias(xg.data(), t, bias.data(), DType::F32, n, cols, nullptr);
      check("addBias " + dt, xg, xw, 0);
      Buffer dw(DType::F32, random_values(cols)), dg = dw;
      ref::bias_backward(gc.data(), t, dw.f32(), n, cols);
      std::vector<float> workspace(gpu::column_sum_workspace(rows, cols), std::numeric_limits<float>::quiet_NaN());
      gpu::bias_backward(gc.data(), t, dg.f32(), n, cols, workspace.data(), nullptr);
      check("biasBackward " + dt, dg, dw, 1e-4, 1e-1);  // rows summed before, not after, adding
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
      std::vector<float> workspace(gpu::column_sum_workspace(tokens, hidden), std::numeric_limits<float>::quiet_NaN());
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
    ref::rope(xw.data(), DType::BF16, cos.f32(), sin.f32(), n, seq_len, heads, head_dim, inverse);
    gpu::rope(xg.data(), DType::BF16, cos.f32(), sin.f32(), n, seq_len, heads, head_dim, inverse, nullptr);
    check(std::string("rope bf16, inverse ") + (inverse ? "true" : "false"), xg, xw, 0);
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
    std::vector<float> workspace(gpu::column_sum_workspace(rows, cols), std::numeric_limits<float>::quiet_NaN());
    Buffer bw(DType::F32, random_values(cols)), bg = bw;
    ref::bias_backward(d_out.data(), DType::BF16, bw.f32(), n, cols);
    gpu::bias_backward(d_out.data(), DType::BF16, bg.f32(), n, cols, workspace.data(), nullptr);
    check("biasBackward bf16, chunked rows" + shape, bg, bw, 1e-4, 1);
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
  gpu::rope(&f, DType::F32, &f, &f, 0, 1, 1, 2, false, nullptr);
  gpu::swiglu(&f, DType::F32, &f, DType::F32, &f, DType::F32, 0, nullptr);
  gpu::add(&f, DType::F32, &f, DType::F32, &f, DType::F32, 0, nullptr);
  gpu::bias_backward(&f, DType::F32, &f, 0, 8, workspace.data(), nullptr);
  for (DType t : {DType::F32, DType::BF16}) {
    const ref::AttentionDims none{1, 0, 2, 1, 64, 1, true, nullptr};
    gpu::attention(&f, &f, &f, &f, &f, t, none, nullptr);
    gpu::attention_backward(&f, &f, &f, &f, &f, &f, &f, &f, &f, &f, t, none, nullptr);
  }
  std::printf("ok   empty inputs launch nothing (rmsNorm, crossEntropy, argmaxRows, attention, ...)\n");
}

struct AttentionCase {
  const char* name;
  DType dtype;
  int batch, seq_len, heads, kv_heads, head_dim;
  bool causal;
  std::vector<int32_t> lengths;  // empty: none
};

double rms(const Buffer& b) {
  double sum = 0;
  for (size_t i = 0; i < b.size(); i++) sum += static_cast<double>(b.at(i)) * b.at(i);
  return std::sqrt(sum / std::max<size_t>(b.size(), 1));
}

/**
 * The GPU's attention against the reference, through the kernels the dispatcher picks for the case
 * (`tensor_cores`: bf16 / fp16 at head dim 64 or 128) or through the SIMT ones (BADAM_ATTENTION=simt).
 * Tensor cores multiply 16-bit P and dS (rounded, as FlashAttention does), so their errors are measured
 * against the larger of the element and the tensor's rms: a near-zero element of a sum of many terms is
 * not held to its own relative precision.
 */
void check_attention(const AttentionCase& c, bool tensor_cores) {
  if (tensor_cores) {
    unsetenv("BADAM_ATTENTION");
  } else {
    setenv("BADAM_ATTENTION", "simt", 1);
  }
  ref::AttentionDims d{c.batch, c.seq_len, c.heads, c.kv_heads, c.head_dim, 1.0f / std::sqrt(static_cast<float>(c.head_dim)),
                       c.causal, c.lengths.empty() ? nullptr : c.lengths.data()};
  const size_t tokens = static_cast<size_t>(c.batch) * c.seq_len;
  const size_t q_n = tokens * c.heads * c.head_dim, kv_n = tokens * c.kv_heads * c.head_dim;
  const size_t rows = static_cast<size_t>(c.batch) * c.heads * c.seq_len;
  const DType t = c.dtype;
  Buffer q(t, random_values(q_n, 2)), k(t, random_values(kv_n, 2)), v(t, random_values(kv_n)), d_out(t, random_values(q_n));
  Buffer ow = Buffer::poison(t, q_n), og = Buffer::poison(t, q_n);
  Buffer lw = Buffer::poison(DType::F32, rows), lg = Buffer::poison(DType::F32, rows);
  ref::attention(q.data(), k.data(), v.data(), ow.data(), lw.f32(), t, d);
  gpu::attention(q.data(), k.data(), v.data(), og.data(), lg.f32(), t, d, nullptr);
  const std::string name = std::string(c.name) + " " + badam::dtype_name(t) + (tensor_cores ? " [tensor cores]" : " [simt]");
  // Tensor cores: bf16 P and dS cost about two bf16 steps of the result; fp16's 3 more bits far less.
  const double tc_tol = t == DType::F16 ? 1.0 / 256 : 4 * kBf16;
  const double out_tol = t == DType::F32 ? 1e-4 : tensor_cores ? tc_tol / 2 : kBf16;
  check("attention out, " + name, og, ow, out_tol, tensor_cores ? rms(ow) : 1e-3);
  check("attention lse, " + name, lg, lw, tensor_cores ? 1e-4 : 1e-5);
  // The backward from the reference's forward on both sides, so only the backward kernels differ.
  Buffer dqw = Buffer::poison(t, q_n), dqg = Buffer::poison(t, q_n);
  Buffer dkw = Buffer::poison(t, kv_n), dkg = Buffer::poison(t, kv_n), dvw = Buffer::poison(t, kv_n), dvg = Buffer::poison(t, kv_n);
  Buffer rw = Buffer::poison(DType::F32, rows), rg = Buffer::poison(DType::F32, rows);
  ref::attention_backward(q.data(), k.data(), v.data(), ow.data(), d_out.data(), lw.f32(), dqw.data(), dkw.data(), dvw.data(),
                          rw.f32(), t, d);
  gpu::attention_backward(q.data(), k.data(), v.data(), ow.data(), d_out.data(), lw.f32(), dqg.data(), dkg.data(), dvg.data(),
                          rg.f32(), t, d, nullptr);
  const double tol = t == DType::F32 ? 1e-4 : tensor_cores ? tc_tol : 2 * kBf16;
  check("attentionBackward D rows, " + name, rg, rw, 1e-4, 1e-2);
  check("attentionBackward dq, " + name, dqg, dqw, tol, tensor_cores ? rms(dqw) : 1e-2);
  check("attentionBackward dk, " + name, dkg, dkw, tol, tensor_cores ? rms(dkw) : 1e-2);
  check("attentionBackward dv, " + name, dvg, dvw, tol, tensor_cores ? rms(dvw) : 1e-2);
  unsetenv("BADAM_ATTENTION");
}

}  // namespace

int main() {
  try {
    check_elementwise();
    check_embedding_norm_rope();
    check_cross_entropy_argmax_sum();
    check_column_sums();
    check_empty_launches();
    const std::vector<AttentionCase> cases = {
        {"batch 2, seq 45, 4 / 2 heads, d 40, lengths [45, 29]", DType::F32, 2, 45, 4, 2, 40, true, {45, 29}},
        {"batch 1, seq 33, 4 / 1 heads, d 64, not causal, lengths [20]", DType::BF16, 1, 33, 4, 1, 64, false, {20}},
        {"batch 2, seq 40, 2 / 2 heads, d 128, lengths [40, 0]", DType::BF16, 2, 40, 2, 2, 128, true, {40, 0}},
        {"batch 1, seq 70, 2 / 1 heads, d 16, no lengths", DType::F32, 1, 70, 2, 1, 16, true, {}},
        // Tensor-core sizes: partial 64-row tiles (70, 130), GQA 4 / 2 and 4 / 1, padding, fp16.
        {"batch 2, seq 70, 4 / 2 heads, d 64, lengths [70, 37]", DType::BF16, 2, 70, 4, 2, 64, true, {70, 37}},
        {"batch 1, seq 130, 4 / 1 heads, d 128, lengths [100]", DType::BF16, 1, 130, 4, 1, 128, true, {100}},
        {"batch 1, seq 70, 4 / 1 heads, d 128, not causal, no lengths", DType::F16, 1, 70, 4, 1, 128, false, {}},
    };
    {
      // A misspelt BADAM_ATTENTION is an error that names the value, not a silent choice of kernels.
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
    for (const auto& c : cases) {
      const bool tensor_cores = c.dtype != DType::F32 && (c.head_dim == 64 || c.head_dim == 128);
      check_attention(c, false);
      if (tensor_cores) check_attention(c, true);
    }
  } catch (const std::exception& e) {
    std::printf("FAIL %s\n", e.what());
    return 1;
  }
  std::printf("%s\n", failures == 0 ? "all emulated kernels match the references" : "some emulated kernels differ");
  return failures == 0 ? 0 : 1;
}
