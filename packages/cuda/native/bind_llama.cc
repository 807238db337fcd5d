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
  d_out->ctx->device->rms_norm_backward(d_out->ptr, d_out->dtype, x->ptr, x->dtype, weight->ptr, weight->dtype,
                                        static_cast<const float*>(rstd->ptr), dx->ptr, dx->dtype,
                                        d_weight ? static_cast<float*>(d_weight->ptr) : nullptr, n, hidden, accumulate_dx);
  return undefined(env);
}

// rope(x [N, heads * headDim] in place, cos fp32 [maxPos, headDim / 2], sin (same), seqLen, heads, headDim, inverse)
napi_value rope(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 7);
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
  const size_t n = rows_of("rope", "x", x, static_cast<size_t>(heads) * head_dim, "heads * headDim");
  if (n % static_cast<size_t>(seq_len) != 0) {
    throw JsError("rope: x has " + std::to_string(n) + " tokens, not a whole number of sequences of seqLen " + std::to_string(seq_len));
  }
  const size_t max_pos = rows_of("rope", "cos", cos, half, "headDim / 2");
  expect_numel("rope", "sin", sin, cos->numel, "cos's size");
  if (max_pos < static_cast<size_t>(seq_len)) {
    throw JsError("rope: the cos/sin tables cover " + std::to_string(max_pos) + " positions, fewer than seqLen " + std::to_string(seq_len));
  }
  x->ctx->device->rope(x->ptr, x->dtype, static_cast<const float*>(cos->ptr), static_cast<const float*>(sin->ptr), n, seq_len, heads,
                       head_dim, boolean(env, argv[6]));
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
  return d;
}

void check_attention_operands(const char* op, const ref::AttentionDims& d, std::initializer_list<std::pair<const char*, Tensor*>> q_like,
                              std::initializer_list<std::pair<const char*, Tensor*>> kv_like, Tensor* q) {
  const size_t tokens = static_cast<size_t>(d.batch) * d.seq_len;
  const size_t q_numel = tokens * d.heads * d.head_dim, kv_numel = tokens * d.kv_heads * d.head_dim;
  for (auto [name, t] : q_like) {
    same_context(q, t, op);
    expect_float(op, name, t);
    expect_same_dtype(op, name, t, q, "q");
    expect_numel(op, name, t, q_numel, "batch * seqLen * heads * headDim");
  }
  for (auto [name, t] : kv_like) {
    same_context(q, t, op);
    expect_same_dtype(op, name, t, q, "q");
    expect_numel(op, name, t, kv_numel, "batch * seqLen * kvHeads * headDim");
  }
}

// attention(q, k, v, out, lse fp32 [batch, heads, seqLen], batch, seqLen, heads, kvHeads, headDim, scale, causal, lengths | null)
napi_value attention(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 13);
  Tensor* q = tensor(env, argv[0], "q");
  Tensor* k = tensor(env, argv[1], "k");
  Tensor* v = tensor(env, argv[2], "v");
  Tensor* out = tensor(env, argv[3], "out");
  Tensor* lse = tensor(env, argv[4], "lse");
  Tensor* lengths = nullptr;
  const ref::AttentionDims d = attention_dims(env, argv, 5, "attention", q, &lengths);
  check_attention_operands("attention", d, {{"q", q}, {"out", out}}, {{"k", k}, {"v", v}}, q);
  same_context(q, lse, "attention");
  expect_dtype("attention", "lse", lse, DType::F32);
  expect_numel("attention", "lse", lse, static_cast<size_t>(d.batch) * d.heads * d.seq_len, "batch * heads * seqLen");
  q->ctx->device->attention(q->ptr, k->ptr, v->ptr, out->ptr, static_cast<float*>(lse->ptr), q->dtype, d);
  return undefined(env);
}

// attentionBackward(q, k, v, out, dOut, lse, dq, dk, dv, batch, seqLen, heads, kvHeads, headDim, scale, causal, lengths | null)
napi_value attention_backward(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 17);
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
  check_attention_operands(op, d, {{"q", q}, {"out", out}, {"dOut", d_out}, {"dq", dq}}, {{"k", k}, {"v", v}, {"dk", dk}, {"dv", dv}}, q);
  same_context(q, lse, op);
  expect_dtype(op, "lse", lse, DType::F32);
  const size_t rows = static_cast<size_t>(d.batch) * d.heads * d.seq_len;
  expect_numel(op, "lse", lse, rows, "batch * heads * seqLen");
  // D = rowsum(dOut * out), one fp32 per query row, lives only for this call.
  Context& ctx = *q->ctx;
  void* d_rows = ctx.allocator->allocate(rows * sizeof(float), MemoryKind::Workspace);
  try {
    ctx.device->attention_backward(q->ptr, k->ptr, v->ptr, out->ptr, d_out->ptr, static_cast<const float*>(lse->ptr), dq->ptr,
                                   dk->ptr, dv->ptr, static_cast<float*>(d_rows), q->dtype, d);
  } catch (...) {
    ctx.allocator->release(d_rows);
    throw;
  }
  // Released to the pool while the kernels may still run: later work on the same stream is ordered after them.
  ctx.allocator->release(d_rows);
  return undefined(env);
}

// swiglu(gate [N, I], up [N, I], out [N, I])
napi_value swiglu(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 3);
  Tensor* gate = tensor(env, argv[0], "gate");
  Tensor* up = tensor(env, argv[1], "up");
  Tensor* out = tensor(env, argv[2], "out");
  elementwise("swiglu", {{"gate", gate}, {"up", up}, {"out", out}});
  gate->ctx->device->swiglu(gate->ptr, gate->dtype, up->ptr, up->dtype, out->ptr, out->dtype, gate->numel);
  return undefined(env);
}

// swigluBackward(gate, up, dOut, dGate, dUp), all [N, I]
napi_value swiglu_backward(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 5);
  Tensor* gate = tensor(env, argv[0], "gate");
  Tensor* up = tensor(env, argv[1], "up");
  Tensor* d_out = tensor(env, argv[2], "dOut");
  Tensor* d_gate = tensor(env, argv[3], "dGate");
  Tensor* d_up = tensor(env, argv[4], "dUp");
  elementwise("swigluBackward", {{"gate", gate}, {"up", up}, {"dOut", d_out}, {"dGate", d_gate}, {"dUp", d_up}});
  gate->ctx->device->swiglu_backward(gate->ptr, gate->dtype, up->ptr, up->dtype, d_out->ptr, d_out->dtype, d_gate->ptr,
                                     d_gate->dtype, d_up->ptr, d_up->dtype, gate->numel);
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

// biasBackward(dOut [N, C], dBias fp32 [C] +=)
napi_value bias_backward(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 2);
  Tensor* d_out = tensor(env, argv[0], "dOut");
  Tensor* d_bias = tensor(env, argv[1], "dBias");
  same_context(d_out, d_bias, "biasBackward");
  expect_float("biasBackward", "dOut", d_out);
  expect_dtype("biasBackward", "dBias", d_bias, DType::F32);
  rows_of("biasBackward", "dOut", d_out, d_bias->numel, "C = dBias's size");
  d_out->ctx->device->bias_backward(d_out->ptr, d_out->dtype, static_cast<float*>(d_bias->ptr), d_out->numel, d_bias->numel);
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
