import {
  type BackendMemoryReport,
  BadamOptionError,
  consoleLog,
  type LogFn,
  type NamedArray,
  optionWithDeprecatedName,
  requireNumber,
} from '@badam/core';
import { type UpdateMaskOptions, UpdateMaskSchedule, type UpdateMaskState } from '@badam/ratio';
import * as tf from '@tensorflow/tfjs-core';
import { assertGradientsRegistered } from './gradients-registered.js';
import type { NamedTensor } from './named-tensor.js';
import { type NamedVariable, parameterInfoOf, validateNamedVariables } from './named-variables.js';

/** Options of {@link BlockOptimizerRatio}: the mask options of `@badam/ratio` plus Adam's hyperparameters. */
export interface BlockOptimizerRatioOptions extends UpdateMaskOptions {
  /** The model's parameters as `[name, tf.Variable]` pairs, in model order. */
  namedParameters: readonly NamedVariable[];
  /** Learning rate. Default 1e-5 (the reference's). */
  learningRate?: number;
  /** @deprecated The old name of `learningRate` (BlockOptimizer's name). */
  lr?: number;
  /** Adam's betas. Default [0.9, 0.999]. */
  betas?: readonly [number, number];
  /** Added to Adam's denominator. Default 1e-8. */
  epsilon?: number;
  /** @deprecated The old name of `epsilon`. */
  eps?: number;
  /** 0: warnings only; 1: a summary at construction. Default 1. */
  verbose?: 0 | 1 | 2;
  /** Where messages go. Default: console. */
  logFn?: LogFn;
}

interface MaskedState {
  readonly m: tf.Variable;
  readonly v: tf.Variable;
  /** Flat indices as [k, 1] int32 (the scatter layout; reshaped to [k] for gathers), kept while the window lasts when keepMask. */
  indices: tf.Tensor2D | undefined;
}

/**
 * BlockOptimizerRatio on TensorFlow.js: every trainable parameter is updated at every step, but only on
 * a mask of `floor(n * updateRatio)` of its entries (`adjacent` windows or `scatter` windows over a seeded
 * permutation); every `switchBlockEvery` steps the windows move on and the Adam state resets. Adam's m and v exist
 * only for the masked entries (gather / scatter on flat indices), never densely. No weight decay.
 *
 * @example
 * ```ts
 * const optimizer = new BlockOptimizerRatio({ namedParameters, updateRatio: 0.1, switchBlockEvery: 100,
 *   maskMode: 'scatter', learningRate: 1e-5 });
 * optimizer.minimize(() => lossOf(batch));
 * ```
 */
export class BlockOptimizerRatio extends tf.Optimizer {
  static get className(): string {
    return 'BlockOptimizerRatio';
  }

  /** Which entries are updated when. */
  readonly masks: UpdateMaskSchedule;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  private rate: number;
  private readonly variables: ReadonlyMap<string, tf.Variable>;
  private readonly names: ReadonlyMap<string, string>;
  private readonly states = new Map<string, MaskedState>();

  constructor(options: BlockOptimizerRatioOptions) {
    super();
    if (typeof options !== 'object' || options === null) {
      throw new BadamOptionError('options', options, 'an object of BlockOptimizerRatio options');
    }
    const {
      namedParameters,
      learningRate,
      lr,
      betas = [0.9, 0.999],
      epsilon,
      eps: oldEps,
      verbose = 1,
      logFn = consoleLog,
      ...maskOptions
    } = options;
    const warn = (message: string) => logFn(`BAdam warning: ${message}`, 'warn');
    const rate = optionWithDeprecatedName({ learningRate, lr }, 'learningRate', 'lr', warn) ?? 1e-5;
    const eps = requireNumber(
      oldEps !== undefined ? 'eps' : 'epsilon',
      optionWithDeprecatedName({ epsilon, eps: oldEps }, 'epsilon', 'eps', warn) ?? 1e-8,
      { min: 0, exclusiveMin: true },
    );
    assertGradientsRegistered();
    const named = validateNamedVariables(namedParameters);
    if (
      !Array.isArray(betas) ||
      betas.length !== 2 ||
      !betas.every((b) => typeof b === 'number' && b >= 0 && b < 1)
    ) {
      throw new BadamOptionError('betas', betas, 'two numbers in [0, 1)');
    }
    this.masks = new UpdateMaskSchedule(parameterInfoOf(named), maskOptions);
    this.beta1 = betas[0];
    this.beta2 = betas[1];
    this.eps = eps;
    this.rate = 0;
    this.learningRate = rate;
    this.variables = new Map(named);
    this.names = new Map(named.map(([name, variable]) => [variable.name, name]));
    const trained = new Set(this.masks.parameters.map((p) => p.name));
    for (const [name, variable] of named) variable.trainable = trained.has(name);
    for (const warning of this.masks.warnings) logFn(`BAdam warning: ${warning}`, 'warn');
    if (verbose >= 1) {
      logFn(
        `BAdam ratio: ${this.masks.parameters.length} parameters updated on ${this.masks.maskedElements()} masked entries per step ` +
          `(${this.masks.maskMode}, windows move every ${this.masks.switchBlockEvery} steps); frozen: ${this.masks.frozenNames.join(', ') || 'none'}`,
        'info',
      );
    }
  }

  /** The learning rate of the next step. */
  get learningRate(): number {
    return this.rate;
  }

  set learningRate(value: number) {
    this.rate = requireNumber('learningRate', value, { min: 0 });
  }

  /** @deprecated The old name of {@link learningRate}. */
  get lr(): number {
    return this.rate;
  }

  set lr(value: number) {
    this.learningRate = value;
  }

  /** The variables that are trained (all but the embedding / lm_head unless included). */
  get trainableVariables(): tf.Variable[] {
    return this.masks.parameters.map((p) => this.variables.get(p.name)!);
  }

  override minimize(f: () => tf.Scalar, returnCost = false, _varList?: tf.Variable[]): tf.Scalar | null {
    const { value, grads } = tf.variableGrads(f, this.trainableVariables);
    try {
      this.applyGradients(grads);
    } finally {
      tf.dispose(grads);
    }
    if (returnCost) return value;
    value.dispose();
    return null;
  }

  /**
   * One masked Adam step from dense gradients keyed by tf variable name or parameter name. Frozen
   * parameters' gradients are ignored; a trained parameter without a gradient is skipped this step.
   */
  override applyGradients(variableGradients: tf.NamedTensorMap | NamedTensor[]): void {
    const entries: Array<[string, tf.Tensor | null]> = Array.isArray(variableGradients)
      ? variableGradients.map((g) => [g.name, g.tensor])
      : Object.entries(variableGradients);
    const gradients = new Map<string, tf.Tensor>();
    for (const [key, tensor] of entries) {
      const name = this.names.get(key) ?? key;
      if (tensor != null && this.variables.has(name)) gradients.set(name, tensor);
    }
    const t = this.masks.stepsInWindow + 1;
    const stepSize = (this.rate * Math.sqrt(1 - this.beta2 ** t)) / (1 - this.beta1 ** t);
    for (const p of this.masks.parameters) {
      const gradient = gradients.get(p.name);
      if (gradient === undefined || p.maskSize === 0) continue;
      const variable = this.variables.get(p.name)!;
      const state = this.stateOf(p.name, p.maskSize, p.whole);
      const indices = p.whole ? undefined : (state.indices ?? this.indexTensor(p.name));
      tf.tidy(() => {
        const flatGrad = tf.reshape(gradient, [-1]);
        const g = indices === undefined ? flatGrad : tf.gather(flatGrad, tf.reshape(indices, [-1]));
        const m = tf.add(tf.mul(state.m, this.beta1), tf.mul(g, 1 - this.beta1));
        const v = tf.add(tf.mul(state.v, this.beta2), tf.mul(tf.square(g), 1 - this.beta2));
        const delta = tf.mul(tf.div(m, tf.add(tf.sqrt(v), this.eps)), -stepSize);
        if (indices === undefined) {
          variable.assign(tf.add(variable, tf.reshape(delta, variable.shape)));
        } else {
          // A dense delta from scatterND, not tensorScatterUpdate: tfjs-backend-cpu's TensorScatterUpdate
          // writes into its input's buffer, which would corrupt every tensor sharing it (clones of the weight).
          variable.assign(
            tf.add(variable, tf.reshape(tf.scatterND(indices, delta, [p.size]), variable.shape)),
          );
        }
        state.m.assign(m);
        state.v.assign(v);
      });
      if (indices !== undefined && state.indices === undefined) indices.dispose();
    }
    this.incrementIterations();
    if (this.masks.advance().reset) this.resetState();
  }

  /** Plain-data state of the mask schedule (step, window). */
  state(): UpdateMaskState {
    return this.masks.state();
  }

  /** Restores `state()`; the Adam state of the current window starts fresh. */
  loadState(state: UpdateMaskState): void {
    this.masks.loadState(state);
    this.resetState();
  }

  /** The Adam state of the current windows as named arrays (`<name>.exp_avg`, `<name>.exp_avg_sq`), for checkpoints. */
  stateTensors(): NamedArray[] {
    const out: NamedArray[] = [];
    for (const [name, s] of this.states) {
      out.push({
        name: `${name}.exp_avg`,
        dtype: 'float32',
        shape: [s.m.size],
        data: Float32Array.from(s.m.dataSync()),
      });
      out.push({
        name: `${name}.exp_avg_sq`,
        dtype: 'float32',
        shape: [s.v.size],
        data: Float32Array.from(s.v.dataSync()),
      });
    }
    return out;
  }

  /** Restores {@link stateTensors} (after `loadState`, which fixes the windows they belong to). */
  loadStateTensors(arrays: readonly NamedArray[]): void {
    this.resetState();
    const byName = new Map(arrays.map((a) => [a.name, a]));
    for (const p of this.masks.parameters) {
      const m = byName.get(`${p.name}.exp_avg`);
      const v = byName.get(`${p.name}.exp_avg_sq`);
      if (m === undefined || v === undefined) continue;
      if (m.data.length !== p.maskSize || v.data.length !== p.maskSize) {
        throw new BadamOptionError(
          `saved state of ${p.name}`,
          `${m.data.length} entries`,
          `${p.maskSize} masked entries`,
        );
      }
      const state = this.stateOf(p.name, p.maskSize, p.whole);
      state.m.assign(tf.tensor1d(m.data as Float32Array));
      state.v.assign(tf.tensor1d(v.data as Float32Array));
    }
  }

  /** Bytes held: `optimizerState` is m and v for the masked entries plus kept index lists. */
  memory(): BackendMemoryReport {
    let optimizerState = 0;
    for (const s of this.states.values())
      optimizerState += 4 * (s.m.size + s.v.size) + 4 * (s.indices?.size ?? 0);
    let weights = 0;
    for (const v of this.variables.values()) weights += 4 * v.size;
    const bytes = tf.memory().numBytes;
    return {
      bytes,
      byKind: { weights, optimizerState, other: Math.max(0, bytes - weights - optimizerState) },
      source: `tf.memory() on the ${tf.getBackend()} backend`,
    };
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      learningRate: this.rate,
      betas: [this.beta1, this.beta2],
      epsilon: this.eps,
      switchBlockEvery: this.masks.switchBlockEvery,
      maskMode: this.masks.maskMode,
    };
  }

  override dispose(): void {
    this.resetState();
    super.dispose();
  }

  private stateOf(name: string, k: number, whole: boolean): MaskedState {
    let state = this.states.get(name);
    if (state === undefined) {
      state = {
        m: tf.variable(tf.zeros([k]), false),
        v: tf.variable(tf.zeros([k]), false),
        indices: this.masks.keepMask && !whole ? this.indexTensor(name) : undefined,
      };
      this.states.set(name, state);
    }
    return state;
  }

  private indexTensor(name: string): tf.Tensor2D {
    const indices = this.masks.indices(name);
    return tf.tensor2d(indices, [indices.length, 1], 'int32');
  }

  private resetState(): void {
    for (const s of this.states.values()) {
      s.m.dispose();
      s.v.dispose();
      s.indices?.dispose();
    }
    this.states.clear();
  }
}
