import { adamwConfigOf, type OptimizerDescription } from './optimizer-description.js';

/**
 * AdamW's hyperparameters besides the learning rate.
 *
 * @deprecated Use {@link OptimizerDescription} (`betas` and `epsilon` in place of `beta1`, `beta2`, `eps`);
 * this alias stays so code written against earlier versions keeps compiling.
 */
export type AdamWConfig = OptimizerDescription;

/** AdamW's hyperparameters with every field present and validated, as {@link adamwUpdate} takes them. */
export interface ResolvedAdamWConfig {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
}

/**
 * Fills in AdamW's defaults and validates each field (betas in [0, 1), epsilon > 0, weightDecay >= 0).
 *
 * @deprecated Use {@link adamwConfigOf}, which this is.
 */
export const resolveAdamWConfig: (config?: OptimizerDescription) => ResolvedAdamWConfig = adamwConfigOf;

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
