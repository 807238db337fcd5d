// Per-element math of the optimizer kernels, shared by the CPU references (reference.cc, g++) and the CUDA
// kernels (cuda_device.cu, nvcc): AdamW's and the masked sparse Adam's update of one element are written once
// here. The per-step scalars are computed once on the host in fp32 (reference.cc: adamw_scalars,
// sparse_adam_step_size) and passed to both.
#pragma once

#include <cmath>

#include "element_access.h"

namespace badam::optim {

/** The scalars of one fused AdamW step over a tensor (torch.optim.AdamW, decoupled decay). */
struct AdamWStep {
  float beta1, beta2, eps;
  float grad_scale;  // 1 / accumulation steps, times the clip coefficient
  float decay;       // 1 - lr * weight_decay
  float step_size;   // lr / (1 - beta1^t)
  float bc2_sqrt;    // sqrt(1 - beta2^t)
};

/**
 * One element of AdamW: the moments m, v and the parameter p (the fp32 master) updated in place from the raw
 * gradient g (times s.grad_scale); returns the new p, for the caller to write the rounded weight.
 */
BADAM_HD inline float adamw_element(const AdamWStep& s, float g, float& p, float& m, float& v) {
  g *= s.grad_scale;
  m = s.beta1 * m + (1.0f - s.beta1) * g;
  v = s.beta2 * v + (1.0f - s.beta2) * g * g;
  const float denom = sqrtf(v) / s.bc2_sqrt + s.eps;
  p = p * s.decay - s.step_size * m / denom;
  return p;
}

/**
 * One masked entry of BlockOptimizerRatio's sparse Adam: compact moments m, v of the entry and the fp32
 * parameter p updated in place; step_size = lr * sqrt(1 - beta2^t) / (1 - beta1^t); no weight decay.
 */
BADAM_HD inline float sparse_adam_element(float beta1, float beta2, float eps, float step_size, float g, float& p, float& m,
                                          float& v) {
  m = beta1 * m + (1.0f - beta1) * g;
  v = beta2 * v + (1.0f - beta2) * g * g;
  p -= step_size * m / (sqrtf(v) + eps);
  return p;
}

}  // namespace badam::optim
