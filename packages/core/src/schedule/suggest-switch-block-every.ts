import { TRAINING_DEFAULTS } from '../defaults.js';
import { requireInteger } from '../validation.js';

/** Inputs of {@link suggestSwitchBlockEvery}. */
export interface SwitchBlockEverySuggestionInput {
  /** n: training examples. */
  examples: number;
  /** B: effective batch size (per-device batch x gradient accumulation x devices). */
  effectiveBatchSize: number;
  /** D: number of blocks. */
  blocks: number;
}

/**
 * BAdam's suggested K: `min(max(round(n / (B * D)), 50), 100)` — about one data pass per block epoch,
 * clamped to [50, 100] optimizer steps.
 *
 * @example
 * ```ts
 * suggestSwitchBlockEvery({ examples: 52_000, effectiveBatchSize: 16, blocks: 32 }); // 100
 * ```
 */
export function suggestSwitchBlockEvery(input: SwitchBlockEverySuggestionInput): number {
  const n = requireInteger('examples', input.examples, { min: 0 });
  const b = requireInteger('effectiveBatchSize', input.effectiveBatchSize, { min: 1 });
  const d = requireInteger('blocks', input.blocks, { min: 1 });
  const { min, max } = TRAINING_DEFAULTS.suggestedSwitchBlockEvery;
  return Math.min(Math.max(Math.round(n / (b * d)), min), max);
}
