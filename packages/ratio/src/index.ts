/**
 * @badam/ratio — the backend-neutral part of BlockOptimizerRatio, BAdam's sparse variant: update masks
 * (adjacent or scatter windows over each parameter's entries), their offsets and switch cadence, per-prefix
 * ratios, and the masked Adam update written once on arrays. `@badam/tfjs` binds it to tensors.
 *
 * @packageDocumentation
 */

// The options of the masks are core's (a run's plan carries them); re-exported where the masks are made.
export type { MaskMode, UpdateMaskOptions } from '@badam/core';
export { KeyedPermutation } from './keyed-permutation.js';
export { type SparseAdamConfig, sparseAdamUpdate } from './sparse-adam.js';
export {
  type MaskedParameter,
  UpdateMaskSchedule,
  type UpdateMaskState,
} from './update-mask-schedule.js';
