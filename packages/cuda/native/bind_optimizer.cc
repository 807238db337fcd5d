// Node-API bindings of BAdam's kernels: GEMM, fused AdamW, the gradient norm, scale, accumulate, cast and
// the masked sparse Adam of BlockOptimizerRatio.
#include "napi_args.h"

namespace badam::napi {
namespace {

// --- kernels --------------------------------------------------------------------------------------------

/**
 * The elements a row-major operand of `rows` x `cols` with leading dimension `ld` spans; an error naming the
 * operand when `ld` is shorter than a row or the span does not fit in the tensor.
 */
size_t strided_span(const char* name, const Tensor* t, size_t rows, size_t cols, size_t ld) {
  if (ld < cols) {
    throw JsError("gemm: the leading dimension of " + std::string(name) + " (" + std::to_string(ld) +
                  ") is shorter than its rows (" + std::to_string(cols) + ")");
  }
  const size_t span = (rows - 1) * ld + cols;
  if (span > t->numel) {
    throw JsError("gemm: " + std::string(name) + " [" + std::to_string(rows) + ", " + std::to_string(cols) + "] with leading dimension " +
                  std::to_string(ld) + " spans " + std::to_string(span) + " elements, the tensor has " + std::to_string(t->numel));
  }
  return span;
}

// gemm(A, B, C, m, n, k, transA, transB, alpha, beta, lda?, ldb?, ldc?): row-major C[m, n] = alpha op(A) op(B)
// + beta C; A is stored [m, k] ([k, m] transposed), B [k, n] ([n, k]); a leading dimension of 0 or none is the
// packed one, a longer one reads a column block of a wider matrix (the operand then spans its rows).
napi_value gemm(napi_env env, napi_callback_info info) {
  auto argv = args_between(env, info, 10, 13);
  Tensor* a = tensor(env, argv[0], "A");
  Tensor* b = tensor(env, argv[1], "B");
  Tensor* c = tensor(env, argv[2], "C");
  same_context(a, b, "gemm");
  same_context(a, c, "gemm");
  const size_t m = count(env, argv[3], "m"), n = count(env, argv[4], "n"), k = count(env, argv[5], "k");
  if (m == 0 || n == 0 || k == 0 || m > 2147483647 || n > 2147483647 || k > 2147483647) throw JsError("gemm: m, n and k must be in [1, 2^31)");
  if (a->dtype != b->dtype || a->dtype == DType::I32) throw JsError("gemm: A and B must share a float dtype");
  if (c->dtype != DType::F32 && c->dtype != a->dtype) throw JsError("gemm: C must be float32 or the dtype of A and B");
  const bool trans_a = boolean(env, argv[6]), trans_b = boolean(env, argv[7]);
  const ref::GemmLayout packed = ref::packed_layout(static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), trans_a, trans_b);
  const size_t lda = optional_count(env, argv, 10, "lda"), ldb = optional_count(env, argv, 11, "ldb"), ldc = optional_count(env, argv, 12, "ldc");
  ref::GemmLayout ld{lda > 0 ? static_cast<int>(lda) : packed.lda, ldb > 0 ? static_cast<int>(ldb) : packed.ldb,
                     ldc > 0 ? static_cast<int>(ldc) : packed.ldc};
  if (lda > 2147483647 || ldb > 2147483647 || ldc > 2147483647) throw JsError("gemm: leading dimensions must be below 2^31");
  if (lda == 0 && ldb == 0 && ldc == 0) {
    if (a->numel != m * k || b->numel != k * n || c->numel != m * n) {
      throw JsError("gemm: sizes do not match m, n, k (A " + std::to_string(a->numel) + ", B " + std::to_string(b->numel) + ", C " +
                    std::to_string(c->numel) + ")");
    }
  } else {
    trans_a ? strided_span("A", a, k, m, ld.lda) : strided_span("A", a, m, k, ld.lda);
    trans_b ? strided_span("B", b, n, k, ld.ldb) : strided_span("B", b, k, n, ld.ldb);
    strided_span("C", c, m, n, ld.ldc);
  }
  a->ctx->device->gemm(a->ptr, b->ptr, c->ptr, a->dtype, c->dtype, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k),
                       trans_a, trans_b, static_cast<float>(number(env, argv[8], "alpha")),
                       static_cast<float>(number(env, argv[9], "beta")), ld);
  return undefined(env);
}

// adamw(master | null, weight, grad, m, v, { lr, beta1, beta2, eps, weightDecay, step, gradScale })
napi_value adamw(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 6);
  Tensor* master = optional_tensor(env, argv[0], "master");
  Tensor* weight = tensor(env, argv[1], "weight");
  Tensor* grad = tensor(env, argv[2], "grad");
  Tensor* m = tensor(env, argv[3], "exp_avg");
  Tensor* v = tensor(env, argv[4], "exp_avg_sq");
  for (Tensor* t : {master, grad, m, v}) same_context(weight, t, "adamw");
  const size_t n = weight->numel;
  for (Tensor* t : {master, grad, m, v}) {
    if (t != nullptr && t->numel != n) throw JsError("adamw: master, grad, exp_avg and exp_avg_sq must have the weight's size");
  }
  if ((master != nullptr && master->dtype != DType::F32) || m->dtype != DType::F32 || v->dtype != DType::F32) throw JsError("adamw: master and moments must be float32");
  if (grad->dtype == DType::I32) throw JsError("adamw: the gradient must be a float tensor (float32, bfloat16 or float16)");
  if (master == nullptr && weight->dtype != DType::F32) throw JsError("adamw: a 16-bit weight needs an fp32 master");
  if (weight->dtype == DType::I32) throw JsError("adamw: the weight must be a float tensor");
  ref::AdamWArgs a{};
  a.lr = static_cast<float>(field(env, argv[5], "lr"));
  a.beta1 = static_cast<float>(field(env, argv[5], "beta1"));
  a.beta2 = static_cast<float>(field(env, argv[5], "beta2"));
  a.eps = static_cast<float>(field(env, argv[5], "eps"));
  a.weight_decay = static_cast<float>(field(env, argv[5], "weightDecay"));
  a.step = static_cast<int>(field(env, argv[5], "step"));
  a.grad_scale = static_cast<float>(field(env, argv[5], "gradScale"));
  if (a.step < 1) throw JsError("adamw: step must be >= 1");
  weight->ctx->device->adamw(master ? static_cast<float*>(master->ptr) : nullptr, weight->ptr, weight->dtype, grad->ptr, grad->dtype,
                             static_cast<float*>(m->ptr), static_cast<float*>(v->ptr), n, a);
  return undefined(env);
}

napi_value sum_squares(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 1);
  bool is_array = false;
  NAPI_OK(napi_is_array(env, argv[0], &is_array));
  if (!is_array) throw JsError("sumSquares takes an array of tensors");
  uint32_t len = 0;
  NAPI_OK(napi_get_array_length(env, argv[0], &len));
  std::vector<TensorView> views;
  Tensor* first = nullptr;
  for (uint32_t i = 0; i < len; i++) {
    napi_value el;
    NAPI_OK(napi_get_element(env, argv[0], i, &el));
    Tensor* t = tensor(env, el, "tensor");
    if (t->dtype == DType::I32) throw JsError("sumSquares: int32 tensors are not gradients");
    if (first == nullptr) first = t;
    same_context(first, t, "sumSquares");
    views.push_back(TensorView{t->ptr, t->dtype, t->numel});
  }
  if (first == nullptr) return make_number(env, 0);
  return make_number(env, first->ctx->device->sum_squares(views));
}

napi_value scale(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 2);
  Tensor* t = tensor(env, argv[0], "tensor");
  if (t->dtype == DType::I32) throw JsError("scale: float tensors only");
  t->ctx->device->scale(t->ptr, t->dtype, t->numel, static_cast<float>(number(env, argv[1], "factor")));
  return undefined(env);
}

napi_value accumulate(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 3);
  Tensor* dst = tensor(env, argv[0], "destination");
  Tensor* src = tensor(env, argv[1], "source");
  same_context(dst, src, "accumulate");
  if (dst->dtype == DType::I32 || src->dtype == DType::I32) throw JsError("accumulate: float tensors only (the destination fp32, bf16 or fp16)");
  if (dst->numel != src->numel) throw JsError("accumulate: sizes differ");
  dst->ctx->device->accumulate(dst->ptr, dst->dtype, src->ptr, src->dtype, dst->numel, static_cast<float>(number(env, argv[2], "factor")));
  return undefined(env);
}

napi_value cast(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 2);
  Tensor* src = tensor(env, argv[0], "source");
  Tensor* dst = tensor(env, argv[1], "destination");
  same_context(src, dst, "cast");
  if (dst->numel != src->numel) throw JsError("cast: sizes differ");
  if (src->dtype == DType::I32 || dst->dtype == DType::I32) throw JsError("cast: float tensors only");
  src->ctx->device->cast(src->ptr, src->dtype, dst->ptr, dst->dtype, src->numel);
  return undefined(env);
}

// sparseAdam(param, weight | null, grad, indices, m, v, { lr, beta1, beta2, eps, step })
napi_value sparse_adam(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 7);
  Tensor* param = tensor(env, argv[0], "param");
  Tensor* weight = optional_tensor(env, argv[1], "weight");
  Tensor* grad = tensor(env, argv[2], "grad");
  Tensor* indices = tensor(env, argv[3], "indices");
  Tensor* m = tensor(env, argv[4], "exp_avg");
  Tensor* v = tensor(env, argv[5], "exp_avg_sq");
  for (Tensor* t : {weight, grad, indices, m, v}) same_context(param, t, "sparseAdam");
  if (param->dtype != DType::F32 || m->dtype != DType::F32 || v->dtype != DType::F32) throw JsError("sparseAdam: param and moments must be float32");
  if (indices->dtype != DType::I32) throw JsError("sparseAdam: indices must be int32");
  if (grad->numel != param->numel || (weight != nullptr && weight->numel != param->numel)) throw JsError("sparseAdam: grad and weight must have the param's size");
  if (m->numel != indices->numel || v->numel != indices->numel) throw JsError("sparseAdam: exp_avg and exp_avg_sq need one entry per index");
  if (grad->dtype == DType::I32 || (weight != nullptr && weight->dtype == DType::I32)) throw JsError("sparseAdam: float gradients and weights only");
  // Indices are checked on the host once per upload would be cheaper; here they are checked every call.
  std::vector<int32_t> host(indices->numel);
  param->ctx->device->download(host.data(), indices->ptr, indices->bytes());
  for (int32_t i : host) {
    if (i < 0 || static_cast<size_t>(i) >= param->numel) throw JsError("sparseAdam: index " + std::to_string(i) + " is outside the param");
  }
  ref::SparseAdamArgs a{};
  a.lr = static_cast<float>(field(env, argv[6], "lr"));
  a.beta1 = static_cast<float>(field(env, argv[6], "beta1"));
  a.beta2 = static_cast<float>(field(env, argv[6], "beta2"));
  a.eps = static_cast<float>(field(env, argv[6], "eps"));
  a.step = static_cast<int>(field(env, argv[6], "step"));
  if (a.step < 1) throw JsError("sparseAdam: step must be >= 1");
  param->ctx->device->sparse_adam(static_cast<float*>(param->ptr), weight ? weight->ptr : nullptr, weight ? weight->dtype : DType::F32,
                                  grad->ptr, grad->dtype, static_cast<const int32_t*>(indices->ptr), static_cast<float*>(m->ptr),
                                  static_cast<float*>(v->ptr), indices->numel, a);
  return undefined(env);
}

}  // namespace

void add_optimizer_bindings(std::vector<Binding>& out) {
  out.insert(out.end(), {
      {"gemm", guarded<gemm>},
      {"adamw", guarded<adamw>},
      {"sumSquares", guarded<sum_squares>},
      {"scale", guarded<scale>},
      {"accumulate", guarded<accumulate>},
      {"cast", guarded<cast>},
      {"sparseAdam", guarded<sparse_adam>},
  });
}

}  // namespace badam::napi
