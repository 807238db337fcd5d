/** How a parameter's update window is laid over its flat entries (BlockOptimizerRatio). */
export type MaskMode = 'adjacent' | 'scatter';

/** Every {@link MaskMode}, for validation and CLI help. */
export const MASK_MODES: readonly MaskMode[] = ['adjacent', 'scatter'];

/**
 * Options of BlockOptimizerRatio's update masks (`@badam/ratio`'s `UpdateMaskSchedule`), named as the
 * PyTorch reference's `BlockOptimizerRatio` arguments in camelCase. Core plans them; a backend builds the
 * masks from them.
 */
export interface UpdateMaskOptions {
  /** Fraction of each parameter's entries updated at every step, in (0, 1]. Default 0.1. */
  updateRatio?: number;
  /** Steps between window moves; the Adam state resets with every move. Default 100. */
  switchBlockEvery?: number;
  /** @deprecated The old name of `switchBlockEvery` (BlockOptimizer's name for the same cadence). */
  switchEvery?: number;
  /** `adjacent`: a flat window `[offset, offset + k)` wrapping around; `scatter`: the same window over a seeded permutation. Default `adjacent`. */
  maskMode?: MaskMode;
  /** Parameters with fewer entries are updated whole. Default 100. */
  preserveThreshold?: number;
  /** Per-prefix ratios overriding `updateRatio`: the first prefix contained in a parameter's name wins. */
  paramUpdateRatios?: Readonly<Record<string, number>>;
  /** Keep each window's index list for its `switchBlockEvery` steps (memory for time) instead of rebuilding it every step. Default true. */
  keepMask?: boolean;
  /** Train the embedding (frozen otherwise). Default false. */
  includeEmbedding?: boolean;
  /** Train parameters named `lm_head` (frozen otherwise). Default false. */
  includeLmHead?: boolean;
  /** Seed of the `scatter` permutations (each parameter's is derived from it and its name). Default 42. */
  seed?: number;
}
