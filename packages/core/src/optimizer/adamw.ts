import { requireNumber } from '../validation.js';

/** AdamW's hyperparameters besides the learning rate, named as in `torch.optim.AdamW`. */
export interface AdamWConfig {
  /** Default 0.9. */
  beta1?: number;
  /** Default 0.999. */
  beta2?: number;
  /** Default 1e-8. */
  eps?: number;
  /** Decoupled weight decay; skipped for biases and norm weights. Default 0. */
  weightDecay?: number;
}

/** {@link AdamWConfig} with every field present and validated. */
export type ResolvedAdamWConfig = Required<AdamWConfig>;

/** Fills in AdamW's defaults and validates each field (betas in [0, 1), eps > 0, weightDecay >= 0). */
export function resolveAdamWConfig(config: AdamWConfig = {}): ResolvedAdamWConfig {
  return {
    beta1: requireNumber('beta1', config.beta1 ?? 0.9, { min: 0, max: 1, exclusiveMax: true }),
    beta2: requireNumber('beta2', config.beta2 ?? 0.999, { min: 0, max: 1, exclusiveMax: true }),
    eps: requireNumber('eps', config.eps ?? 1e-8, { min: 0, exclusiveMin: true }),
    weightDecay: requireNumber('weightDecay', config.weightDecay ?? 0, { min: 0 }),
  };
}

/** One AdamW step's scalars. */
export interface AdamWStep {
  readonly lr: number;
  /** 1-based step count since the state was created (bias correction). */
  readonly step: number;
  /** Multiplies the gradient first (1 / gradient-accumulation steps). */
  readonly gradientScale: number;
  /** Whether weight decay applies to this parameter. */
  readonly decay: boolean;
}

/**
 * The AdamW update rule, written once as a plain function on fp32 arrays (the reference the fused
 * backends are tested against). Follows `torch.optim.AdamW` exactly:
 *
 * ```text
 * g = grad * gradientScale
 * p = p * (1 - lr * weightDecay)                     (only when decay)
 * m = beta1 m + (1 - beta1) g ;  v = beta2 v + (1 - beta2) g^2
 * p = p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 * ```
 */
export function adamwUpdate(
  master: Float32Array,
  grad: Float32Array,
  m: Float32Array,
  v: Float32Array,
  config: ResolvedAdamWConfig,
  step: AdamWStep,
): void {
  const { beta1, beta2, eps, weightDecay } = config;
  const { lr, gradientScale } = step;
  const decayFactor = step.decay ? 1 - lr * weightDecay : 1;
  const stepSize = lr / (1 - beta1 ** step.step);
  const biasCorrection2Sqrt = Math.sqrt(1 - beta2 ** step.step);
  for (let i = 0; i < master.length; i++) {
    const g = grad[i]! * gradientScale;
    const mi = beta1 * m[i]! + (1 - beta1) * g;
    const vi = beta2 * v[i]! + (1 - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const denom = Math.sqrt(v[i]!) / biasCorrection2Sqrt + eps;
    master[i] = master[i]! * decayFactor - (stepSize * m[i]!) / denom;
  }
}
