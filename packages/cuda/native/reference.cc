#include "reference.h"

#include <cmath>
#include <vector>

namespace badam::ref {

void gemm(const void* a, const void* b, void* c, DType ab, DType cdt, int m, int n, int k, bool trans_a, bool trans_b,
          float alpha, float beta, const GemmLayout& ld) {
  std::vector<float> row(static_cast<size_t>(k));
  for (int i = 0; i < m; i++) {
    for (int p = 0; p < k; p++) {
      row[p] = load_as_f32(a, ab, trans_a ? static_cast<size_t>(p) * ld.lda + i : static_cast<size_t>(i) * ld.lda + p);
    }
    for (int j = 0; j < n; j++) {
      float acc = 0.0f;
      for (int p = 0; p < k; p++) {
        acc += row[p] * load_as_f32(b, ab, trans_b ? static_cast<size_t>(j) * ld.ldb + p : static_cast<size_t>(p) * ld.ldb + j);
      }
      const size_t at = static_cast<size_t>(i) * ld.ldc + j;
      float out = alpha * acc;
      if (beta != 0.0f) out += beta * load_as_f32(c, cdt, at);
      store_from_f32(c, cdt, at, out);
    }
  }
}

optim::AdamWStep adamw_step(const AdamWArgs& args) {
  return optim::AdamWStep{args.beta1,
                          args.beta2,
                          args.eps,
                          args.grad_scale,
                          1.0f - args.lr * args.weight_decay,
                          args.lr / (1.0f - std::pow(args.beta1, static_cast<float>(args.step))),
                          std::sqrt(1.0f - std::pow(args.beta2, static_cast<float>(args.step)))};
}

float sparse_adam_step_size(const SparseAdamArgs& args) {
  return args.lr * std::sqrt(1.0f - std::pow(args.beta2, static_cast<float>(args.step))) /
         (1.0f - std::pow(args.beta1, static_cast<float>(args.step)));
}

void adamw(float* master, void* weight, DType weight_dtype, const void* grad, DType grad_dtype, float* m, float* v,
           size_t n, const AdamWArgs& args) {
  const optim::AdamWStep step = adamw_step(args);
  float* p = master != nullptr ? master : static_cast<float*>(weight);
  for (size_t i = 0; i < n; i++) {
    const float next = optim::adamw_element(step, load_as_f32(grad, grad_dtype, i), p[i], m[i], v[i]);
    if (master != nullptr) store_from_f32(weight, weight_dtype, i, next);
  }
}

double sum_squares(const void* x, DType dtype, size_t n) {
  double s = 0.0;
  for (size_t i = 0; i < n; i++) {
    const double v = load_as_f32(x, dtype, i);
    s += v * v;
  }
  return s;
}

void scale(void* x, DType dtype, size_t n, float factor) {
  for (size_t i = 0; i < n; i++) store_from_f32(x, dtype, i, load_as_f32(x, dtype, i) * factor);
}

void accumulate(void* dst, DType dst_dtype, const void* src, DType src_dtype, size_t n, float factor) {
  for (size_t i = 0; i < n; i++) {
    store_from_f32(dst, dst_dtype, i, load_as_f32(dst, dst_dtype, i) + load_as_f32(src, src_dtype, i) * factor);
  }
}

void cast(const void* src, DType src_dtype, void* dst, DType dst_dtype, size_t n) {
  for (size_t i = 0; i < n; i++) store_from_f32(dst, dst_dtype, i, load_as_f32(src, src_dtype, i));
}

void sparse_adam(float* param, void* weight, DType weight_dtype, const void* grad, DType grad_dtype,
                 const int32_t* indices, float* m, float* v, size_t k, const SparseAdamArgs& args) {
  const float step_size = sparse_adam_step_size(args);
  for (size_t j = 0; j < k; j++) {
    const size_t i = static_cast<size_t>(indices[j]);
    const float next = optim::sparse_adam_element(args.beta1, args.beta2, args.eps, step_size,
                                                  load_as_f32(grad, grad_dtype, i), param[i], m[j], v[j]);
    if (weight != nullptr) store_from_f32(weight, weight_dtype, i, next);
  }
}

}  // namespace badam::ref
