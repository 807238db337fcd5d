/** Adam's hyperparameters for the masked update (no weight decay, as the reference). */
export interface SparseAdamConfig {
  readonly lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
}

/**
 * The masked Adam update of BlockOptimizerRatio, written once on plain arrays — the reference the tensor
 * backends are tested against. For the k masked entries of one parameter (flat `indices` into `param`):
 *
 * ```text
 * g = grad[indices];  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
 * param[indices] -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)
 * ```
 *
 * `m` and `v` have length k: Adam state exists only for the masked entries.
 */
export function sparseAdamUpdate(
  param: Float32Array,
  grad: Float32Array,
  indices: Int32Array,
  m: Float32Array,
  v: Float32Array,
  config: SparseAdamConfig,
  step: number,
): void {
  const { lr, beta1, beta2, eps } = config;
  const stepSize = (lr * Math.sqrt(1 - beta2 ** step)) / (1 - beta1 ** step);
  for (let j = 0; j < indices.length; j++) {
    const i = indices[j]!;
    const g = grad[i]!;
    m[j] = beta1 * m[j]! + (1 - beta1) * g;
    v[j] = beta2 * v[j]! + (1 - beta2) * g * g;
    param[i] = param[i]! - (stepSize * m[j]!) / (Math.sqrt(v[j]!) + eps);
  }
}
