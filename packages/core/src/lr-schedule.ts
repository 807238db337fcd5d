import { TRAINING_DEFAULTS } from './defaults.js';
import { BadamOptionError } from './errors.js';
import { requireInteger, requireNumber, requireOneOf } from './validation.js';

/** Shape of the learning-rate curve after warmup. */
export type LrScheduleType = 'constant' | 'linear' | 'cosine';

/** All schedule types, for validation and CLI help. */
export const LR_SCHEDULE_TYPES: readonly LrScheduleType[] = ['constant', 'linear', 'cosine'];

/** Parameters of a learning-rate schedule. */
export interface LrScheduleOptions {
  /** Curve after warmup. */
  type: LrScheduleType;
  /** Peak learning rate, reached at the end of warmup. */
  learningRate: number;
  /** Total optimizer steps of the run (the curve reaches its end here). Required for linear and cosine. */
  totalSteps?: number;
  /** Steps of linear warmup from 0 to `learningRate`. Default 0. */
  warmupSteps?: number;
  /** Warmup as a fraction of `totalSteps`, used when `warmupSteps` is absent (as Hugging Face's warmup_ratio). */
  warmupRatio?: number;
  /** Cosine only: waves over the decay, as Hugging Face's `num_cycles` (default 0.5: one half cosine, peak to floor). */
  numCycles?: number;
  /** Floor as a fraction of `learningRate` for linear and cosine decay. Default 0. */
  minLrRatio?: number;
}

/**
 * A learning-rate schedule as a pure function of the optimizer step (0-based: the rate used by the first
 * update is `lr(0)`), following Hugging Face's `get_scheduler` curves:
 *
 * - warmup: `learningRate * step / warmupSteps` for `step < warmupSteps`;
 * - `constant`: `learningRate` after warmup;
 * - `linear`: decays linearly to `minLrRatio * learningRate` at `totalSteps`;
 * - `cosine`: `min + (peak - min) * 0.5 * (1 + cos(pi * 2 * numCycles * progress))`.
 *
 * @example
 * ```ts
 * const lr = createLrSchedule({ type: 'cosine', learningRate: 1e-5, totalSteps: 1000, warmupRatio: 0.03 });
 * blockOptimizer.lr = lr(step);
 * ```
 */
export function createLrSchedule(options: LrScheduleOptions): (step: number) => number {
  const type = requireOneOf('lrScheduleType', options.type, LR_SCHEDULE_TYPES);
  const peak = requireNumber('learningRate', options.learningRate, { min: 0 });
  const totalSteps =
    options.totalSteps === undefined
      ? undefined
      : requireInteger('totalSteps', options.totalSteps, { min: 1 });
  if (type !== 'constant' && totalSteps === undefined) {
    throw new BadamOptionError('totalSteps', undefined, `an integer >= 1 for the ${type} schedule`);
  }
  let warmup = 0;
  if (options.warmupSteps !== undefined) {
    warmup = requireInteger('warmupSteps', options.warmupSteps, { min: 0 });
  } else if (options.warmupRatio !== undefined) {
    const ratio = requireNumber('warmupRatio', options.warmupRatio, { min: 0, max: 1 });
    if (totalSteps === undefined && ratio > 0) {
      throw new BadamOptionError('totalSteps', undefined, 'an integer >= 1 when warmupRatio is set');
    }
    warmup = Math.ceil(ratio * (totalSteps ?? 0));
  }
  const numCycles = requireNumber('numCycles', options.numCycles ?? TRAINING_DEFAULTS.lrSchedule.numCycles, {
    min: 0,
  });
  const floor =
    peak *
    requireNumber('minLrRatio', options.minLrRatio ?? TRAINING_DEFAULTS.lrSchedule.minLrRatio, {
      min: 0,
      max: 1,
    });

  return (step: number): number => {
    requireInteger('step', step, { min: 0 });
    if (step < warmup) return (peak * step) / warmup;
    if (type === 'constant') return peak;
    const total = totalSteps as number;
    const progress = Math.min(1, (step - warmup) / Math.max(1, total - warmup));
    const shape = type === 'linear' ? 1 - progress : 0.5 * (1 + Math.cos(Math.PI * 2 * numCycles * progress));
    return floor + (peak - floor) * Math.max(0, shape);
  };
}

/** The learning rate at `step` of the schedule described by `options`; see {@link createLrSchedule}. */
export function learningRateAt(step: number, options: LrScheduleOptions): number {
  return createLrSchedule(options)(step);
}
