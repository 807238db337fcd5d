// Node-API bindings of the Llama ops (shapes and semantics in llama_reference.h).
#include "napi_args.h"

namespace badam::napi {
namespace {

// embedding(table [V, H], ids int32 [N], out [N, H])
napi_value embedding(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 3);
  Tensor* table = tensor(env, argv[0], "table");
  Tensor* ids = tensor(env, argv[1], "ids");
  Tensor* out = tensor(env, argv[2], "out");
  for (Tensor* t : {ids, out}) same_context(table, t, "embedding");
  expect_float("embedding", "table", table);
  expect_dtype("embedding", "ids", ids, DType::I32);
  expect_float("embedding", "out", out);
  const size_t hidden = row_length_per_id("embedding", "out", out, ids);
  const size_t vocab = rows_of("embedding", "table", table, hidden, "H = out's row length");
  table->ctx->device->embedding(table->ptr, table->dtype, static_cast<const int32_t*>(ids->ptr), out->ptr, out->dtype, ids->numel,
                                vocab, hidden);
  return undefined(env);
}

// embeddingBackward(dOut [N, H], ids int32 [N], dTable fp32 [V, H] +=)
napi_value embedding_backward(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 3);
  Tensor* d_out = tensor(env, argv[0], "dOut");
  Tensor* ids = tensor(env, argv[1], "ids");
  Tensor* d_table = tensor(env, argv[2], "dTable");
  for (Tensor* t : {ids, d_table}) same_context(d_out, t, "embeddingBackward");
  expect_float("embeddingBackward", "dOut", d_out);
  expect_dtype("embeddingBackward", "ids", ids, DType::I32);
  expect_dtype("embeddingBackward", "dTable", d_table, DType::F32);
  const size_t hidden = row_length_per_id("embeddingBackward", "dOut", d_out, ids);
  const size_t vocab = rows_of("embeddingBackward", "dTable", d_table, hidden, "H = dOut's row length");
  d_out->ctx->device->embedding_backward(d_out->ptr, d_out->dtype, static_cast<const int32_t*>(ids->ptr),
                                         static_cast<float*>(d_table->ptr), ids->numel, vocab, hidden);
  return undefined(env);
}

// rmsNorm(x [N, H], weight [H], out [N, H], rstd fp32 [N], eps)
napi_value rms_norm(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 5);
  Tensor* x = tensor(env, argv[0], "x");
  Tensor* weight = tensor(env, argv[1], "weight");
  Tensor* out = tensor(env, argv[2], "out");
  Tensor* rstd = tensor(env, argv[3], "rstd");
  for (Tensor* t : {weight, out, rstd}) same_context(x, t, "rmsNorm");
  for (auto [name, t] : {std::pair{"x", x}, {"weight", weight}, {"out", out}}) expect_float("rmsNorm", name, t);
  expect_dtype("rmsNorm", "rstd", rstd, DType::F32);
  const size_t hidden = weight->numel;
  const size_t n = rows_of("rmsNorm", "x", x, hidden, "H = weight's size");
  expect_numel("rmsNorm", "out", out, x->numel, "x's size");
  expect_numel("rmsNorm", "rstd", rstd, n, "one per row of x");
  const double eps = number(env, argv[4], "eps");
  if (!(eps >= 0)) throw JsError("rmsNorm: eps must be a non-negative number");
  x->ctx->device->rms_norm(x->ptr, x->dtype, weight->ptr, weight->dtype, out->ptr, out->dtype, static_cast<float*>(rstd->ptr), n,
                           hidden, static_cast<float>(eps));
  return undefined(env);
}

// rmsNormBackward(dOut [N, H], x [N, H], weight [H], rstd fp32 [N], dx [N, H], dWeight fp32 [H] | null, accumulateDx)
napi_value rms_norm_backward(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 7);
  Tensor* d_out = tensor(env, argv[0], "dOut");
  Tensor* x = tensor(env, argv[1], "x");
  Tensor* weight = tensor(env, argv[2], "weight");
  Tensor* rstd = tensor(env, argv[3], "rstd");
  Tensor* dx = tensor(env, argv[4], "dx");
  Tensor* d_weight = optional_tensor(env, argv[5], "dWeight");
  for (Tensor* t : {x, weight, rstd, dx, d_weight}) same_context(d_out, t, "rmsNormBackward");
  for (auto [name, t] : {std::pair{"dOut", d_out}, {"x", x}, {"weight", weight}, {"dx", dx}}) expect_float("rmsNormBackward", name, t);
  expect_dtype("rmsNormBackward", "rstd", rstd, DType::F32);
  if (d_weight != nullptr) expect_dtype("rmsNormBackward", "dWeight", d_weight, DType::F32);
  const size_t hidden = weight->numel;
  const size_t n = rows_of("rmsNormBackward", "x", x, hidden, "H = weight's size");
  expect_numel("rmsNormBackward", "dOut", d_out, x->numel, "x's size");
  expect_numel("rmsNormBackward", "dx", dx, x->numel, "x's size");
  expect_numel("rmsNormBackward", "rstd", rstd, n, "one per row of x");
  if (d_weight != nullptr) expect_numel("rmsNormBackward", "dWeight", d_weight, hidden, "weight's size");
  const bool accumulate_dx = boolean(env, argv[6]);
  // dWeight's deterministic column sums on the GPU go through per-chunk partial sums.
  CallWorkspace workspace(*d_out->ctx, d_weight != nullptr ? ref::column_sum_workspace(n, hidden) : 0);
  d_out->ctx->device->rms_norm_backward(d_out->ptr, d_out->dtype, x->ptr, x->dtype, weight->ptr, weight->dtype,
                                        static_cast<const float*>(rstd->ptr), dx->ptr, dx->dtype,
                                        d_weight ? static_cast<float*>(d_weight->ptr) : nullptr, n, hidden, accumulate_dx,
                                        workspace.floats());
  return undefined(env);
}

// addRmsNorm(x [N, H], delta [N, H], sum [N, H], weight [H], out [N, H], rstd fp32 [N], eps): sum = x + delta
// (sum may be x), out = rmsNorm(sum); x, delta, sum and out share one dtype.
napi_value add_rms_norm(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 7);
  const char* op = "addRmsNorm";
  Tensor* x = tensor(env, argv[0], "x");
  Tensor* delta = tensor(env, argv[1], "delta");
  Tensor* sum = tensor(env, argv[2], "sum");
  Tensor* weight = tensor(env, argv[3], "weight");
  Tensor* out = tensor(env, argv[4], "out");
  Tensor* rstd = tensor(env, argv[5], "rstd");
  for (Tensor* t : {delta, sum, weight, out, rstd}) same_context(x, t, op);
  expect_float(op, "x", x);
  expect_float(op, "weight", weight);
  for (auto [name, t] : {std::pair{"delta", delta}, {"sum", sum}, {"out", out}}) {
    expect_same_dtype(op, name, t, x, "x");
    expect_numel(op, name, t, x->numel, "x's size");
  }
  expect_dtype(op, "rstd", rstd, DType::F32);
  const size_t hidden = weight->numel;
  const size_t n = rows_of(op, "x", x, hidden, "H = weight's size");
  expect_numel(op, "rstd", rstd, n, "one per row of x");
  const double eps = number(env, argv[6], "eps");
  if (!(eps >= 0)) throw JsError("addRmsNorm: eps must be a non-negative number");
  x->ctx->device->add_rms_norm(x->ptr, delta->ptr, sum->ptr, x->dtype, weight->ptr, weight->dtype, out->ptr,
                               static_cast<float*>(rstd->ptr), n, hidden, static_cast<float>(eps));
  return undefined(env);
}

// rope(x [N, heads * headDim] in place, cos fp32 [maxPos, headDim / 2], sin (same), seqLen, heads, headDim, inverse,
//      rowStride?): with rowStride, the first `heads` heads of rows of rowStride elements (q and k of a fused
//      projection in one pass)
napi_value rope(napi_env env, napi_callback_info info) {
  auto argv = args_between(env, info, 7, 8);
  Tensor* x = tensor(env, argv[0], "x");
  Tensor* cos = tensor(env, argv[1], "cos");
  Tensor* sin = tensor(env, argv[2], "sin");
  for (Tensor* t : {cos, sin}) same_context(x, t, "rope");
  expect_float("rope", "x", x);
  expect_dtype("rope", "cos", cos, DType::F32);
  expect_dtype("rope", "sin", sin, DType::F32);
  const int seq_len = int_in(env, argv[3], "rope", "seqLen", 1, 1 << 30);
  const int heads = int_in(env, argv[4], "rope", "heads", 1, 1 << 20);
  const int head_dim = int_in(env, argv[5], "rope", "headDim", 2, 1 << 16);
  if (head_dim % 2 != 0) throw JsError("rope: headDim must be even, got " + std::to_string(head_dim));
  const size_t half = static_cast<size_t>(head_dim / 2);
  const size_t width = static_cast<size_t>(heads) * head_dim;
  const size_t stride = optional_count(env, argv, 7, "rowStride");
  size_t n = 0;
  if (stride == 0) {
    n = rows_of("rope", "x", x, width, "heads * headDim");
  } else {
    // Rows of `stride` elements, the last one possibly cut short after its rotated heads.
    if (stride < width || x->numel < width) {
      throw JsError("rope: rowStride " + std::to_string(stride) + " must hold heads * headDim = " + std::to_string(width) +
                    " elements, and x (" + std::to_string(x->numel) + " elements) at least one row of them");
    }
    n = (x->numel - width) / stride + 1;
  }
  if (n % static_cast<size_t>(seq_len) != 0) {
    throw JsError("rope: x has " + std::to_string(n) + " tokens, not a whole number of sequences of seqLen " + std::to_string(seq_len));
  }
  const size_t max_pos = rows_of("rope", "cos", cos, half, "headDim / 2");
  expect_numel("rope", "sin", sin, cos->numel, "cos's size");
  if (max_pos < static_cast<size_t>(seq_len)) {
    throw JsError("rope: the cos/sin tables cover " + std::to_string(max_pos) + " positions, fewer than seqLen " + std::to_string(seq_len));
  }
  x->ctx->device->rope(x->ptr, x->dtype, static_cast<const float*>(cos->ptr), static_cast<const float*>(sin->ptr), n, seq_len, heads,
                       head_dim, boolean(env, argv[6]), stride == 0 ? width : stride);
  return undefined(env);
}

/** Reads (batch, seqLen, heads, kvHeads, headDim, scale, causal, lengths) from argv[first..] and checks them. */
ref::AttentionDims attention_dims(napi_env env, const std::vector<napi_value>& argv, size_t first, const char* op,
                                  const Tensor* q, Tensor** lengths_out) {
  ref::AttentionDims d{};
  // batch and heads index CUDA grid dimensions (at most 65535 each), on both devices alike.
  d.batch = int_in(env, argv[first], op, "batch", 1, 65535);
  d.seq_len = int_in(env, argv[first + 1], op, "seqLen", 1, 1 << 24);
  d.heads = int_in(env, argv[first + 2], op, "heads", 1, 65535);
  d.kv_heads = int_in(env, argv[first + 3], op, "kvHeads", 1, 65535);
  d.head_dim = int_in(env, argv[first + 4], op, "headDim", 1, 128);
  d.scale = static_cast<float>(number(env, argv[first + 5], "scale"));
  d.causal = boolean(env, argv[first + 6]);
  if (d.heads % d.kv_heads != 0) {
    throw JsError(std::string(op) + ": heads (" + std::to_string(d.heads) + ") must be a multiple of kvHeads (" +
                  std::to_string(d.kv_heads) + ")");
  }
  Tensor* lengths = optional_tensor(env, argv[first + 7], "lengths");
  if (lengths != nullptr) {
    same_context(q, lengths, op);
    expect_dtype(op, "lengths", lengths, DType::I32);
    expect_numel(op, "lengths", lengths, static_cast<size_t>(d.batch), "one per batch row");
  }
  d.lengths = lengths ? static_cast<const int32_t*>(lengths->ptr) : nullptr;
  *lengths_out = lengths;
  const size_t q_stride = optional_count(env, argv, first + 8, "qStride");
  const size_t kv_stride = optional_count(env, argv, first + 9, "kvStride");
  if ((q_stride > 0 && q_stride < static_cast<size_t>(d.heads) * d.head_dim) ||
      (kv_stride > 0 && kv_stride < static_cast<size_t>(d.kv_heads) * d.head_dim) || q_stride > (1u << 30) ||
      kv_stride > (1u << 30)) {
    throw JsError(std::string(op) + ": qStride must be 0 or at least heads * headDim, kvStride 0 or at least kvHeads * headDim");
  }
  d.q_stride = static_cast<int>(q_stride);
  d.kv_stride = static_cast<int>(kv_stride);
  return d;
}

/**
 * q-like operands (q, dq) are token rows of qStride elements, kv-like ones (k, v, dk, dv) of kvStride, packed
 * ones (out, dOut) of heads * headDim: a strided operand spans (tokens - 1) * stride + its row.
 */
void check_attention_operands(const char* op, const ref::AttentionDims& d, std::initializer_list<std::pair<const char*, Tensor*>> q_like,
                              std::initializer_list<std::pair<const char*, Tensor*>> kv_like,
                              std::initializer_list<std::pair<const char*, Tensor*>> packed, Tensor* q) {
  const size_t tokens = static_cast<size_t>(d.batch) * d.seq_len;
  const size_t q_row = static_cast<size_t>(d.heads) * d.head_dim, kv_row = static_cast<size_t>(d.kv_heads) * d.head_dim;
  const auto check = [&](const char* name, Tensor* t, size_t row, size_t stride, const char* as) {
    same_context(q, t, op);
    expect_float(op, name, t);
    expect_same_dtype(op, name, t, q, "q");
    if (stride == 0) {
      expect_numel(op, name, t, tokens * row, as);
    } else if ((tokens - 1) * stride + row > t->numel) {
      throw JsError(std::string(op) + ": " + name + " has " + std::to_string(t->numel) + " elements, fewer than the " +
                    std::to_string((tokens - 1) * stride + row) + " its strided rows span");
    }
  };
  for (auto [name, t] : q_like) check(name, t, q_row, static_cast<size_t>(d.q_stride), "batch * seqLen * heads * headDim");
  for (auto [name, t] : kv_like) check(name, t, kv_row, static_cast<size_t>(d.kv_stride), "batch * seqLen * kvHeads * headDim");
  for (auto [name, t] : packed) check(name, t, q_row, 0, "batch * seqLen * heads * headDim");
}

// attention(q, k, v, out, lse fp32 [batch, heads, seqLen], batch, seqLen, heads, kvHeads, headDim, scale, causal,
//           lengths | null, qStride?, kvStride?)
napi_value attention(napi_env env, napi_callback_info info) {
  auto argv = args_between(env, info, 13, 15);
  Tensor* q = tensor(env, argv[0], "q");
  Tensor* k = tensor(env, argv[1], "k");
  Tensor* v = tensor(env, argv[2], "v");
  Tensor* out = tensor(env, argv[3], "out");
  Tensor* lse = tensor(env, argv[4], "lse");
  Tensor* lengths = nullptr;
  const ref::AttentionDims d = attention_dims(env, argv, 5, "attention", q, &lengths);
  check_attention_operands("attention", d, {{"q", q}}, {{"k", k}, {"v", v}}, {{"out", out}}, q);
  same_context(q, lse, "attention");
  expect_dtype("attention", "lse", lse, DType::F32);
  expect_numel("attention", "lse", lse, static_cast<size_t>(d.batch) * d.heads * d.seq_len, "batch * heads * seqLen");
  q->ctx->device->attention(q->ptr, k->ptr, v->ptr, out->ptr, static_cast<float*>(lse->ptr), q->dtype, d);
  return undefined(env);
}

// attentionBackward(q, k, v, out, dOut, lse, dq, dk, dv, batch, seqLen, heads, kvHeads, headDim, scale, causal,
//                   lengths | null, qStride?, kvStride?)
napi_value attention_backward(napi_env env, napi_callback_info info) {
  auto argv = args_between(env, info, 17, 19);
  const char* op = "attentionBackward";
  Tensor* q = tensor(env, argv[0], "q");
  Tensor* k = tensor(env, argv[1], "k");
  Tensor* v = tensor(env, argv[2], "v");
  Tensor* out = tensor(env, argv[3], "out");
  Tensor* d_out = tensor(env, argv[4], "dOut");
  Tensor* lse = tensor(env, argv[5], "lse");
  Tensor* dq = tensor(env, argv[6], "dq");
  Tensor* dk = tensor(env, argv[7], "dk");
  Tensor* dv = tensor(env, argv[8], "dv");
  Tensor* lengths = nullptr;
  const ref::AttentionDims d = attention_dims(env, argv, 9, op, q, &lengths);
  check_attention_operands(op, d, {{"q", q}, {"dq", dq}}, {{"k", k}, {"v", v}, {"dk", dk}, {"dv", dv}},
                           {{"out", out}, {"dOut", d_out}}, q);
  same_context(q, lse, op);
  expect_dtype(op, "lse", lse, DType::F32);
  const size_t rows = static_cast<size_t>(d.batch) * d.heads * d.seq_len;
  expect_numel(op, "lse", lse, rows, "batch * heads * seqLen");
  // D = rowsum(dOut * out), one fp32 per query row, and the split dk / dv partial sums live only for this call.
  Context& ctx = *q->ctx;
  CallWorkspace d_rows(ctx, rows);
  CallWorkspace partials(ctx, ref::attention_backward_partial_floats(d, q->dtype));
  ctx.device->attention_backward(q->ptr, k->ptr, v->ptr, out->ptr, d_out->ptr, static_cast<const float*>(lse->ptr), dq->ptr,
                                 dk->ptr, dv->ptr, d_rows.floats(), partials.floats(), q->dtype, d);
  return undefined(env);
}

/** Rows of a fused gate_up [N, 2 I] for out [N, I]: N, with I = out's row length; errors name the operand. */
size_t swiglu_rows(const char* op, const Tensor* gate_up, const Tensor* out, size_t inter) {
  if (inter == 0 || out->numel % inter != 0) {
    throw JsError(std::string(op) + ": intermediate size " + std::to_string(inter) + " does not divide " +
                  std::to_string(out->numel) + " elements");
  }
  const size_t rows = out->numel / inter;
  expect_numel(op, "gateUp", gate_up, 2 * rows * inter, "2 * the rows * intermediate size: gate then up in each row");
  return rows;
}

// swiglu(gateUp [N, 2 I], out [N, I], I): out = silu(gate) * up, gate and up the two halves of each row
napi_value swiglu(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 3);
  Tensor* gate_up = tensor(env, argv[0], "gateUp");
  Tensor* out = tensor(env, argv[1], "out");
  same_context(gate_up, out, "swiglu");
  expect_float("swiglu", "gateUp", gate_up);
  expect_float("swiglu", "out", out);
  const size_t inter = count(env, argv[2], "intermediateSize");
  const size_t rows = swiglu_rows("swiglu", gate_up, out, inter);
  gate_up->ctx->device->swiglu(gate_up->ptr, gate_up->dtype, out->ptr, out->dtype, rows, inter);
  return undefined(env);
}

// swigluBackward(gateUp [N, 2 I], dOut [N, I], dGateUp [N, 2 I], I); dGateUp may be gateUp
napi_value swiglu_backward(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 4);
  const char* op = "swigluBackward";
  Tensor* gate_up = tensor(env, argv[0], "gateUp");
  Tensor* d_out = tensor(env, argv[1], "dOut");
  Tensor* d_gate_up = tensor(env, argv[2], "dGateUp");
  for (Tensor* t : {d_out, d_gate_up}) same_context(gate_up, t, op);
  for (auto [name, t] : {std::pair{"gateUp", gate_up}, {"dOut", d_out}, {"dGateUp", d_gate_up}}) expect_float(op, name, t);
  const size_t inter = count(env, argv[3], "intermediateSize");
  const size_t rows = swiglu_rows(op, gate_up, d_out, inter);
  expect_numel(op, "dGateUp", d_gate_up, gate_up->numel, "gateUp's size");
  gate_up->ctx->device->swiglu_backward(gate_up->ptr, gate_up->dtype, d_out->ptr, d_out->dtype, d_gate_up->ptr,
                                        d_gate_up->dtype, rows, inter);
  return undefined(env);
}

// add(a, b, out), one shape; out may alias a or b
napi_value add(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 3);
  Tensor* a = tensor(env, argv[0], "a");
  Tensor* b = tensor(env, argv[1], "b");
  Tensor* out = tensor(env, argv[2], "out");
  elementwise("add", {{"a", a}, {"b", b}, {"out", out}});
  a->ctx->device->add(a->ptr, a->dtype, b->ptr, b->dtype, out->ptr, out->dtype, a->numel);
  return undefined(env);
}

// addBias(x [N, C] in place, bias [C])
napi_value add_bias(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 2);
  Tensor* x = tensor(env, argv[0], "x");
  Tensor* bias = tensor(env, argv[1], "bias");
  same_context(x, bias, "addBias");
  expect_float("addBias", "x", x);
  expect_float("addBias", "bias", bias);
  rows_of("addBias", "x", x, bias->numel, "C = bias's size");
  x->ctx->device->add_bias(x->ptr, x->dtype, bias->ptr, bias->dtype, x->numel, bias->numel);
  return undefined(env);
}

// biasBackward(dOut [N, C], dBias fp32 [C] +=, rowStride?): dOut's rows may be `rowStride` elements apart (the
// columns of one bias in a fused projection); then dOut spans (N - 1) * rowStride + C.
napi_value bias_backward(napi_env env, napi_callback_info info) {
  auto argv = args_between(env, info, 2, 3);
  Tensor* d_out = tensor(env, argv[0], "dOut");
  Tensor* d_bias = tensor(env, argv[1], "dBias");
  same_context(d_out, d_bias, "biasBackward");
  expect_float("biasBackward", "dOut", d_out);
  expect_dtype("biasBackward", "dBias", d_bias, DType::F32);
  const size_t channels = d_bias->numel;
  const size_t stride = optional_count(env, argv, 2, "rowStride");
  size_t rows = 0;
  if (stride == 0) {
    rows = rows_of("biasBackward", "dOut", d_out, channels, "C = dBias's size");
  } else {
    if (stride < channels || d_out->numel < channels) {
      throw JsError("biasBackward: rowStride " + std::to_string(stride) + " must hold C = " + std::to_string(channels) +
                    " elements, and dOut (" + std::to_string(d_out->numel) + " elements) at least one row");
    }
    rows = (d_out->numel - channels) / stride + 1;
  }
  // The GPU's deterministic column sums go through per-chunk partial sums.
  CallWorkspace workspace(*d_out->ctx, ref::column_sum_workspace(rows, channels));
  d_out->ctx->device->bias_backward(d_out->ptr, d_out->dtype, static_cast<float*>(d_bias->ptr), rows, channels,
                                    stride == 0 ? channels : stride, workspace.floats());
  return undefined(env);
}

// crossEntropy(logits [n, V] (gradient in place), labels int32 [n], losses fp32 [n], gradScale)
napi_value cross_entropy(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 4);
  Tensor* logits = tensor(env, argv[0], "logits");
  Tensor* labels = tensor(env, argv[1], "labels");
  Tensor* losses = tensor(env, argv[2], "losses");
  for (Tensor* t : {labels, losses}) same_context(logits, t, "crossEntropy");
  expect_float("crossEntropy", "logits", logits);
  expect_dtype("crossEntropy", "labels", labels, DType::I32);
  expect_dtype("crossEntropy", "losses", losses, DType::F32);
  expect_numel("crossEntropy", "losses", losses, labels->numel, "one per label");
  if (logits->numel % labels->numel != 0) {
    throw JsError("crossEntropy: logits has " + std::to_string(logits->numel) + " elements, not a whole number of rows for " +
                  std::to_string(labels->numel) + " labels");
  }
  const double grad_scale = number(env, argv[3], "gradScale");
  logits->ctx->device->cross_entropy(logits->ptr, logits->dtype, static_cast<const int32_t*>(labels->ptr),
                                     static_cast<float*>(losses->ptr), labels->numel, logits->numel / labels->numel,
                                     static_cast<float>(grad_scale));
  return undefined(env);
}

// argmaxRows(x [n, V], out int32 [n])
napi_value argmax_rows(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 2);
  Tensor* x = tensor(env, argv[0], "x");
  Tensor* out = tensor(env, argv[1], "out");
  same_context(x, out, "argmaxRows");
  expect_float("argmaxRows", "x", x);
  expect_dtype("argmaxRows", "out", out, DType::I32);
  if (x->numel % out->numel != 0) {
    throw JsError("argmaxRows: x has " + std::to_string(x->numel) + " elements, not a whole number of rows for out's " +
                  std::to_string(out->numel));
  }
  x->ctx->device->argmax_rows(x->ptr, x->dtype, static_cast<int32_t*>(out->ptr), out->numel, x->numel / out->numel);
  return undefined(env);
}

// sum(x) -> number (double accumulation)
napi_value sum(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 1);
  Tensor* x = tensor(env, argv[0], "x");
  expect_float("sum", "x", x);
  return make_number(env, x->ctx->device->sum(x->ptr, x->dtype, x->numel));
}

}  // namespace

void add_llama_bindings(std::vector<Binding>& out) {
  out.insert(out.end(), {
      {"embedding", guarded<embedding>},
      {"embeddingBackward", guarded<embedding_backward>},
      {"rmsNorm", guarded<rms_norm>},
      {"rmsNormBackward", guarded<rms_norm_backward>},
      {"addRmsNorm", guarded<add_rms_norm>},
      {"rope", guarded<rope>},
      {"attention", guarded<attention>},
      {"attentionBackward", guarded<attention_backward>},
      {"swiglu", guarded<swiglu>},
      {"swigluBackward", guarded<swiglu_backward>},
      {"add", guarded<add>},
      {"addBias", guarded<add_bias>},
      {"biasBackward", guarded<bias_backward>},
      {"crossEntropy", guarded<cross_entropy>},
      {"argmaxRows", guarded<argmax_rows>},
      {"sum", guarded<sum>},
  });
}

}  // namespace badam::napi
