import {
  BadamOptionError,
  BadamStateError,
  isTrainedByRatio,
  type MaskMode,
  type NamedParameterInfo,
  numel,
  optionWithDeprecatedName,
  TRAINING_DEFAULTS,
  type UpdateMaskOptions,
  validateNamedParameters,
  validateSwitchBlockEvery,
} from '@badam/core';
import { KeyedPermutation } from './keyed-permutation.js';

/** A trainable parameter and its mask geometry. */
export interface MaskedParameter {
  readonly name: string;
  readonly shape: readonly number[];
  /** n: entries of the parameter. */
  readonly size: number;
  /** The update ratio that applies to it. */
  readonly ratio: number;
  /** k: entries updated per step, `floor(n * ratio)`, or n when updated whole. */
  readonly maskSize: number;
  /** Updated whole: fewer than `preserveThreshold` entries, or a ratio of 1. */
  readonly whole: boolean;
}

/** Plain-data state of an {@link UpdateMaskSchedule}. */
export interface UpdateMaskState {
  readonly version: 1;
  /** Optimizer steps taken. */
  readonly step: number;
  /** Windows completed: offsets are `window * k mod n`. */
  readonly window: number;
  /** Steps taken in the current window (Adam's `t` is this + 1 at the next step). */
  readonly stepsInWindow: number;
  /** Fingerprint of the parameter set and options. */
  readonly fingerprint: string;
}

const OPTION_NAMES = [
  'updateRatio',
  'switchBlockEvery',
  'switchEvery',
  'maskMode',
  'preserveThreshold',
  'paramUpdateRatios',
  'keepMask',
  'includeEmbedding',
  'includeLmHead',
  'seed',
];

function hashString(text: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/**
 * The backend-neutral half of BlockOptimizerRatio: which entries of each parameter are updated at each
 * step. Every trainable parameter is updated at every step, but only on `k = floor(n * ratio)` of its n
 * entries — the window `[offset, offset + k)` of its flat indices (`adjacent`, wrapping around) or of a
 * fixed seeded permutation of them (`scatter`). Every `switchBlockEvery` steps every offset moves on by its k
 * (mod n) and the optimizer state must reset ({@link UpdateMaskSchedule.advance} says when).
 *
 * @example
 * ```ts
 * const masks = new UpdateMaskSchedule(parameters, { updateRatio: 0.1, switchBlockEvery: 100, maskMode: 'scatter' });
 * const indices = masks.indices('model.layers.0.mlp.up_proj.weight'); // Int32Array of k flat indices
 * // ...update those entries...
 * if (masks.advance().reset) dropAdamState(); // the windows moved on
 * ```
 */
export class UpdateMaskSchedule {
  /** Parameters trained, in model order. */
  readonly parameters: readonly MaskedParameter[];
  /** Parameters never trained (the embedding unless included, `lm_head` unless included). */
  readonly frozenNames: readonly string[];
  /** Non-fatal findings (e.g. a parameter whose window is empty). */
  readonly warnings: readonly string[];
  /** Steps between window moves; -1 never moves them. */
  readonly switchBlockEvery: number;

  /** @deprecated The old name of {@link switchBlockEvery}. */
  get switchEvery(): number {
    return this.switchBlockEvery;
  }
  readonly maskMode: MaskMode;
  readonly keepMask: boolean;
  readonly seed: number;
  private readonly byName: ReadonlyMap<string, MaskedParameter>;
  private readonly permutations = new Map<string, KeyedPermutation>();
  private readonly cache = new Map<string, Int32Array>();
  private readonly configFingerprint: string;
  private stepCount = 0;
  private windowCount = 0;
  private stepsInWindowCount = 0;

  constructor(parameters: readonly NamedParameterInfo[], options: UpdateMaskOptions = {}) {
    for (const key of Object.keys(options)) {
      if (!OPTION_NAMES.includes(key)) {
        throw new BadamOptionError(
          key,
          (options as Record<string, unknown>)[key],
          'absent: it is not an option',
          `known options: ${OPTION_NAMES.join(', ')}`,
        );
      }
    }
    validateNamedParameters(parameters);
    const defaults = TRAINING_DEFAULTS.ratio;
    const ratio = requireRatio('updateRatio', options.updateRatio ?? defaults.updateRatio);
    const warnings: string[] = [];
    const switchEvery = validateSwitchBlockEvery(
      optionWithDeprecatedName(options, 'switchBlockEvery', 'switchEvery', (m) => warnings.push(m)) ??
        defaults.switchBlockEvery,
      options.switchEvery !== undefined ? 'switchEvery' : 'switchBlockEvery',
    );
    const maskMode = options.maskMode ?? defaults.maskMode;
    if (maskMode !== 'adjacent' && maskMode !== 'scatter') {
      throw new BadamOptionError('maskMode', maskMode, '"adjacent" or "scatter"');
    }
    const threshold = options.preserveThreshold ?? defaults.preserveThreshold;
    if (!Number.isSafeInteger(threshold) || threshold < 0) {
      throw new BadamOptionError('preserveThreshold', threshold, 'an integer >= 0');
    }
    const seed = options.seed ?? TRAINING_DEFAULTS.seed;
    if (!Number.isSafeInteger(seed) || seed < 0)
      throw new BadamOptionError('seed', seed, 'a non-negative integer');
    const overrides = Object.entries(options.paramUpdateRatios ?? {});
    for (const [prefix, value] of overrides) {
      requireRatio(`paramUpdateRatios[${JSON.stringify(prefix)}]`, value);
      if (!parameters.some((p) => p.name.includes(prefix))) {
        throw new BadamOptionError(
          'paramUpdateRatios',
          prefix,
          'prefixes that occur in parameter names',
          `no parameter name contains ${JSON.stringify(prefix)}; names look like ${JSON.stringify(parameters[0]?.name)}`,
        );
      }
    }

    const trained: MaskedParameter[] = [];
    const frozen: string[] = [];
    for (const p of parameters) {
      if (!isTrainedByRatio(p.name, options)) {
        frozen.push(p.name);
        continue;
      }
      const size = numel(p.shape);
      const pRatio = overrides.find(([prefix]) => p.name.includes(prefix))?.[1] ?? ratio;
      const whole = size < threshold || pRatio === 1;
      const maskSize = whole ? size : Math.floor(size * pRatio);
      if (maskSize === 0 && size > 0) {
        warnings.push(
          `${p.name}: floor(${size} * ${pRatio}) = 0 entries per step, so it is never updated; raise its ratio or preserveThreshold`,
        );
      }
      trained.push({ name: p.name, shape: [...p.shape], size, ratio: pRatio, maskSize, whole });
    }
    if (trained.length === 0) {
      throw new BadamOptionError(
        'namedParameters',
        `${parameters.length} parameters`,
        'at least one trainable parameter',
        'all are embedding or lm_head parameters; set includeEmbedding / includeLmHead',
      );
    }
    this.parameters = trained;
    this.frozenNames = frozen;
    this.warnings = warnings;
    this.switchBlockEvery = switchEvery;
    this.maskMode = maskMode;
    this.keepMask = options.keepMask ?? defaults.keepMask;
    this.seed = seed;
    this.byName = new Map(trained.map((p) => [p.name, p]));
    this.configFingerprint = hashString(
      JSON.stringify([trained.map((p) => [p.name, p.size, p.maskSize]), switchEvery, maskMode, seed]),
      0,
    ).toString(16);
  }

  /** Optimizer steps taken. */
  get step(): number {
    return this.stepCount;
  }

  /** Windows completed since the start. */
  get window(): number {
    return this.windowCount;
  }

  /** Steps taken in the current window; the next update is Adam step `stepsInWindow + 1`. */
  get stepsInWindow(): number {
    return this.stepsInWindowCount;
  }

  /** The parameter's mask geometry. */
  parameter(name: string): MaskedParameter {
    const p = this.byName.get(name);
    if (p === undefined) {
      throw new BadamOptionError(
        'parameter name',
        name,
        'a trained parameter of this schedule',
        this.frozenNames.includes(name) ? 'it is frozen' : undefined,
      );
    }
    return p;
  }

  /** Start of the parameter's current window in its (possibly permuted) flat index order. */
  offset(name: string): number {
    const p = this.parameter(name);
    if (p.whole || p.size === 0) return 0;
    return (this.windowCount * p.maskSize) % p.size;
  }

  /**
   * The flat indices (into the row-major flattening of the parameter) updated in the current window, in
   * window order: `offset, offset + 1, ...` wrapping at n (`adjacent`), or the permutation's images of
   * those positions (`scatter`).
   */
  indices(name: string): Int32Array {
    const cached = this.cache.get(name);
    if (cached !== undefined) return cached;
    const p = this.parameter(name);
    const out = new Int32Array(p.maskSize);
    const offset = this.offset(name);
    if (p.whole || this.maskMode === 'adjacent') {
      for (let j = 0; j < p.maskSize; j++) out[j] = (offset + j) % p.size;
    } else {
      let perm = this.permutations.get(name);
      if (perm === undefined) {
        perm = new KeyedPermutation(p.size, hashString(name, this.seed));
        this.permutations.set(name, perm);
      }
      for (let j = 0; j < p.maskSize; j++) out[j] = perm.at((offset + j) % p.size);
    }
    if (this.keepMask) this.cache.set(name, out);
    return out;
  }

  /** Total entries updated per step over all trained parameters (the entries that carry Adam state). */
  maskedElements(): number {
    return this.parameters.reduce((n, p) => n + p.maskSize, 0);
  }

  /**
   * Records one optimizer step. After every `switchBlockEvery`-th step the windows move on and `reset` is true:
   * the optimizer state of the old windows must be dropped.
   */
  advance(): { reset: boolean } {
    this.stepCount += 1;
    this.stepsInWindowCount += 1;
    if (this.switchBlockEvery === -1 || this.stepsInWindowCount < this.switchBlockEvery)
      return { reset: false };
    this.stepsInWindowCount = 0;
    this.windowCount += 1;
    this.cache.clear();
    return { reset: true };
  }

  /** Plain-data state for checkpoints. */
  state(): UpdateMaskState {
    return {
      version: 1,
      step: this.stepCount,
      window: this.windowCount,
      stepsInWindow: this.stepsInWindowCount,
      fingerprint: this.configFingerprint,
    };
  }

  /** Restores `state()`; the parameters and options must be the ones the state was saved with. */
  loadState(state: UpdateMaskState): void {
    if (typeof state !== 'object' || state === null || state.version !== 1) {
      throw new BadamStateError(
        `update mask state must be an object with version 1, got ${JSON.stringify(state)}`,
      );
    }
    if (state.fingerprint !== this.configFingerprint) {
      throw new BadamStateError(
        'update mask state was saved for other parameters or options (ratio, switchBlockEvery, maskMode, seed); resume with the same ones',
      );
    }
    const ok = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 0;
    if (
      !ok(state.step) ||
      !ok(state.window) ||
      !ok(state.stepsInWindow) ||
      (this.switchBlockEvery !== -1 && state.stepsInWindow >= this.switchBlockEvery)
    ) {
      throw new BadamStateError(`update mask state has invalid counters: ${JSON.stringify(state)}`);
    }
    this.stepCount = state.step;
    this.windowCount = state.window;
    this.stepsInWindowCount = state.stepsInWindow;
    this.cache.clear();
  }
}

function requireRatio(option: string, value: unknown): number {
  if (typeof value !== 'number' || !(value > 0 && value <= 1)) {
    throw new BadamOptionError(option, value, 'a number in (0, 1]');
  }
  return value;
}
