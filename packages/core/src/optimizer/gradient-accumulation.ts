import { TRAINING_DEFAULTS } from '../defaults.js';
import { BadamOptionError } from '../errors.js';
import { requireInteger } from '../validation.js';

/** What one optimizer update multiplies the summed micro-batch gradients by, and why. */
export interface UpdateScale {
  /** `1 / G` (the mean over the step's micro-batches), times the clip coefficient when clipping applied. */
  readonly gradientScale: number;
  /** Global L2 norm of the mean gradient before clipping; present when clipping is on. */
  readonly gradNorm?: number;
  /** The clip coefficient that was folded in (1 when the norm was within bounds). */
  readonly clipCoefficient?: number;
}

/**
 * Counts micro-batches toward optimizer steps and works out each update's gradient scale: the one place
 * where gradient accumulation and global-norm clipping are defined, for every backend.
 *
 * Backends sum the micro-batch gradients unscaled; at the update they report the sum's squared L2 norm,
 * and the gradients are multiplied once by {@link UpdateScale.gradientScale}. That scale is `1 / G`, and
 * with `maxGradNorm` also `torch.nn.utils.clip_grad_norm_`'s coefficient
 * `min(1, maxGradNorm / (norm + 1e-6))` of the mean gradient's norm. A `maxGradNorm` of 0 clips nothing,
 * as an absent one (Hugging Face's `max_grad_norm 0`).
 *
 * @example
 * ```ts
 * const accumulation = new GradientAccumulation({ steps: 4, maxGradNorm: 1 });
 * // after each micro-batch's backward:
 * if (accumulation.count()) {
 *   const { gradientScale } = accumulation.updateScale(() => backend.gradientSumOfSquares());
 *   backend.applyUpdate({ ..., gradientScale });
 * }
 * ```
 */
export class GradientAccumulation {
  /** G: micro-batches per optimizer step. */
  readonly steps: number;
  /** Clip the mean gradient to this global norm; undefined: no clipping. */
  readonly maxGradNorm: number | undefined;
  private counted = 0;

  constructor(options: { steps?: number | undefined; maxGradNorm?: number | undefined } = {}) {
    this.steps = requireInteger(
      'gradientAccumulationSteps',
      options.steps ?? TRAINING_DEFAULTS.gradientAccumulationSteps,
      { min: 1 },
    );
    this.maxGradNorm = clipGradNormOf(options.maxGradNorm);
  }

  /** Micro-batches counted toward the next update. */
  get pending(): number {
    return this.counted;
  }

  /** Counts one micro-batch; true when it completes an optimizer step (the count restarts then). */
  count(): boolean {
    this.counted += 1;
    if (this.counted < this.steps) return false;
    this.counted = 0;
    return true;
  }

  /** Forgets the micro-batches counted toward the next update (their gradients were dropped). */
  reset(): void {
    this.counted = 0;
  }

  /**
   * The scale of this update. `sumOfSquares` (the summed gradients' squared L2 norm, from the backend) is
   * only asked for when clipping is on.
   */
  updateScale(sumOfSquares: () => number): UpdateScale {
    const mean = 1 / this.steps;
    if (this.maxGradNorm === undefined) return { gradientScale: mean };
    const squares = sumOfSquares();
    const gradNorm = Math.sqrt(squares) * mean;
    const clipCoefficient = Math.min(1, this.maxGradNorm / (gradNorm + 1e-6));
    // A NaN norm leaves the gradients alone, as torch does without error_if_nonfinite; the loss guard acts.
    const factor = Number.isNaN(clipCoefficient) ? 1 : clipCoefficient;
    return { gradientScale: mean * factor, gradNorm, clipCoefficient: factor };
  }
}

/**
 * A clipping threshold as the optimizers keep it: undefined for no clipping (absent or 0, as Hugging Face's
 * `max_grad_norm 0`), else the norm.
 *
 * @throws BadamOptionError for a negative, infinite or non-numeric value.
 */
export function clipGradNormOf(value: unknown): number | undefined {
  if (value === undefined || value === TRAINING_DEFAULTS.clipGradNorm) return undefined;
  if (typeof value !== 'number' || !(value > 0) || !Number.isFinite(value)) {
    throw new BadamOptionError('clipGradNorm', value, 'a finite number >= 0', '0 or absent: no clipping');
  }
  return value;
}
