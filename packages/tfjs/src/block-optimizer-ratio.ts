import {
  type BackendMemoryReport,
  BadamOptionError,
  BadamStateError,
  consoleLog,
  type LogFn,
  type NamedArray,
  OPTIMIZER_STATE_KEYS,
  optimizerTensorName,
  optionWithDeprecatedName,
  requireNumber,
  TRAINING_DEFAULTS,
} from '@badam/core';
import { type UpdateMaskOptions, UpdateMaskSchedule, type UpdateMaskState } from '@badam/ratio';
import * as tf from '@tensorflow/tfjs-core';
import { assertGradientsRegistered } from './gradients-registered.js';
import type { NamedTensor } from './named-tensor.js';
import { type NamedVariable, parameterInfoOf, validateNamedVariables } from './named-variables.js';
import {
  assertVariablesListed,
  decodeConfigValue,
  encodeConfigValue,
  optimizerWeights,
  readOptimizerWeights,
  type SavedParameter,
  savedParametersOf,
  TrainableFlags,
  variablesFromList,
  variablesFromRegistry,
} from './optimizer-serialization.js';

/** Options of {@link BlockOptimizerRatio}: the mask options of `@badam/ratio` plus Adam's hyperparameters. */
export interface BlockOptimizerRatioOptions extends UpdateMaskOptions {
  /** The model's parameters as `[name, tf.Variable]` pairs, in model order. */
  namedParameters: readonly NamedVariable[];
  /** Learning rate. Default 1e-5 (the reference's; core's `TRAINING_DEFAULTS.ratio`). */
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

/** The options of a BlockOptimizerRatio that a config carries: all but the parameters and `logFn`. */
type SerializableRatioOptions = Omit<BlockOptimizerRatioOptions, 'namedParameters' | 'logFn'>;

/** What a BlockOptimizerRatio holds once it knows its variables. */
interface BoundRatio {
  readonly masks: UpdateMaskSchedule;
  readonly named: readonly NamedVariable[];
  readonly variables: ReadonlyMap<string, tf.Variable>;
  /** tf variable name -> parameter name. */
  readonly names: ReadonlyMap<string, string>;
  readonly trainableFlags: TrainableFlags;
}

/** The weight that carries the mask schedule among a BlockOptimizerRatio's weights (`badam/ratio-state`). */
const STATE_WEIGHT = 'ratio-state';

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

  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  private rate: number;
  private readonly options: SerializableRatioOptions;
  private readonly maskOptions: UpdateMaskOptions;
  private readonly logFn: LogFn;
  private readonly verbose: number;
  /** The parameters of an optimizer made from a config, until it finds their variables. */
  private readonly saved: readonly SavedParameter[] | undefined;
  private bound: BoundRatio | undefined;
  private readonly states = new Map<string, MaskedState>();
  /** Tensors handed out by the last getWeights() (tf.LayersModel.save does not dispose them). */
  private lastWeights: tf.Tensor[] = [];

  /**
   * @param options - the parameters, the mask options and Adam's hyperparameters.
   * @param saved - internal: the parameters of a config (see {@link BlockOptimizerRatio.fromConfig}).
   */
  constructor(options: BlockOptimizerRatioOptions, saved?: readonly SavedParameter[]) {
    super();
    if (typeof options !== 'object' || options === null) {
      throw new BadamOptionError('options', options, 'an object of BlockOptimizerRatio options');
    }
    const { namedParameters, logFn = consoleLog, ...serializable } = options;
    const {
      learningRate,
      lr,
      betas = TRAINING_DEFAULTS.adamw.betas,
      epsilon,
      eps: oldEps,
      verbose = 1,
      ...maskOptions
    } = serializable;
    const warn = (message: string) => logFn(`BAdam warning: ${message}`, 'warn');
    const rate =
      optionWithDeprecatedName({ learningRate, lr }, 'learningRate', 'lr', warn) ??
      TRAINING_DEFAULTS.ratio.learningRate;
    const eps = requireNumber(
      oldEps !== undefined ? 'eps' : 'epsilon',
      optionWithDeprecatedName({ epsilon, eps: oldEps }, 'epsilon', 'eps', warn) ??
        TRAINING_DEFAULTS.adamw.epsilon,
      { min: 0, exclusiveMin: true },
    );
    assertGradientsRegistered();
    if (
      !Array.isArray(betas) ||
      betas.length !== 2 ||
      !betas.every((b) => typeof b === 'number' && b >= 0 && b < 1)
    ) {
      throw new BadamOptionError('betas', betas, 'two numbers in [0, 1)');
    }
    this.beta1 = betas[0];
    this.beta2 = betas[1];
    this.eps = eps;
    this.rate = 0;
    this.learningRate = rate;
    this.options = serializable;
    this.maskOptions = maskOptions;
    this.logFn = logFn;
    this.verbose = verbose;
    this.saved = saved;
    if (saved === undefined) this.bind(validateNamedVariables(namedParameters));
  }

  /** Which entries are updated when. */
  get masks(): UpdateMaskSchedule {
    return this.requireBound().masks;
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
    const { masks, variables } = this.requireBound();
    return masks.parameters.map((p) => variables.get(p.name)!);
  }

  override minimize(f: () => tf.Scalar, returnCost = false, varList?: tf.Variable[]): tf.Scalar | null {
    if (this.bound === undefined) this.bind(variablesFromList(this.saved!, varList, 'BlockOptimizerRatio'));
    else assertVariablesListed(this.bound.named, varList, 'BlockOptimizerRatio');
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
    const { names, variables } = this.requireBound();
    const gradients = new Map<string, tf.Tensor>();
    for (const [key, tensor] of entries) {
      const name = names.get(key) ?? key;
      if (tensor != null && variables.has(name)) gradients.set(name, tensor);
    }
    const t = this.masks.stepsInWindow + 1;
    const stepSize = (this.rate * Math.sqrt(1 - this.beta2 ** t)) / (1 - this.beta1 ** t);
    for (const p of this.masks.parameters) {
      const gradient = gradients.get(p.name);
      if (gradient === undefined || p.maskSize === 0) continue;
      const variable = variables.get(p.name)!;
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

  /**
   * The Adam state of the current windows as named arrays under the checkpoint names (`<name>.exp_avg`,
   * `<name>.exp_avg_sq`: core's `OPTIMIZER_STATE_KEYS`), each of its masked entries only.
   */
  stateTensors(): NamedArray[] {
    const out: NamedArray[] = [];
    for (const [name, s] of this.states) {
      out.push({
        name: optimizerTensorName(name, OPTIMIZER_STATE_KEYS.expAvg),
        dtype: 'float32',
        shape: [s.m.size],
        data: Float32Array.from(s.m.dataSync()),
      });
      out.push({
        name: optimizerTensorName(name, OPTIMIZER_STATE_KEYS.expAvgSq),
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
      const m = byName.get(optimizerTensorName(p.name, OPTIMIZER_STATE_KEYS.expAvg));
      const v = byName.get(optimizerTensorName(p.name, OPTIMIZER_STATE_KEYS.expAvgSq));
      if (m === undefined || v === undefined) continue;
      if (m.data.length !== p.maskSize || v.data.length !== p.maskSize) {
        throw new BadamOptionError(
          `saved state of ${p.name}`,
          `${m.data.length} entries`,
          `${p.maskSize} masked entries`,
        );
      }
      const state = this.stateOf(p.name, p.maskSize, p.whole);
      // In a tidy: assign shares the new tensors' data, and the tensors themselves are ours to free.
      tf.tidy(() => {
        state.m.assign(tf.tensor1d(m.data as Float32Array));
        state.v.assign(tf.tensor1d(v.data as Float32Array));
      });
    }
  }

  /** Bytes held: `optimizerState` is m and v for the masked entries plus kept index lists. */
  memory(): BackendMemoryReport {
    let optimizerState = 0;
    for (const s of this.states.values())
      optimizerState += 4 * (s.m.size + s.v.size) + 4 * (s.indices?.size ?? 0);
    let weights = 0;
    for (const v of this.requireBound().variables.values()) weights += 4 * v.size;
    const bytes = tf.memory().numBytes;
    return {
      bytes,
      byKind: { weights, optimizerState, other: Math.max(0, bytes - weights - optimizerState) },
      source: `tf.memory() on the ${tf.getBackend()} backend`,
    };
  }

  /**
   * The optimizer's config, plain data that {@link BlockOptimizerRatio.fromConfig} turns back into an equal
   * optimizer (and that a LayersModel saves with `includeOptimizer`). `badam` holds the options and the
   * parameter names as base64 JSON, which tfjs-layers' key conversion leaves alone.
   */
  override getConfig(): tf.serialization.ConfigDict {
    return {
      learningRate: this.rate,
      betas: [this.beta1, this.beta2],
      epsilon: this.eps,
      ...(this.bound !== undefined
        ? { switchBlockEvery: this.bound.masks.switchBlockEvery, maskMode: this.bound.masks.maskMode }
        : {}),
      badam: encodeConfigValue({
        options: { ...this.options, learningRate: this.rate, lr: undefined },
        parameters: this.bound === undefined ? this.saved : savedParametersOf(this.bound.named),
      }),
    };
  }

  /**
   * An optimizer from {@link getConfig}'s config (tf.serialization calls it, e.g. in `tf.loadLayersModel`);
   * it finds its variables as a config-made BlockOptimizer does: in {@link setWeights}, or by position in
   * the variable list of its first `minimize`.
   */
  static override fromConfig<T extends tf.serialization.Serializable>(
    _cls: tf.serialization.SerializableConstructor<T>,
    config: tf.serialization.ConfigDict,
  ): T {
    const saved = decodeConfigValue(config.badam, 'BlockOptimizerRatio config.badam') as {
      options: SerializableRatioOptions;
      parameters: SavedParameter[];
    };
    return new BlockOptimizerRatio(
      { ...saved.options, namedParameters: [] },
      saved.parameters,
    ) as unknown as T;
  }

  /**
   * The iteration count, the mask schedule's state as JSON in an int32 tensor (`badam/ratio-state`) and the
   * masked Adam state (`badam/<param>.exp_avg`, `badam/<param>.exp_avg_sq`), as tf.Optimizers give their
   * weights for `model.save(..., { includeOptimizer: true })`. Valid until the next call or {@link dispose}.
   */
  override async getWeights(): Promise<NamedTensor[]> {
    const { named } = this.requireBound();
    tf.dispose(this.lastWeights);
    const state = { state: this.state(), parameters: savedParametersOf(named) };
    const weights = optimizerWeights(await this.saveIterations(), STATE_WEIGHT, state, this.stateTensors());
    this.lastWeights = weights.map((w) => w.tensor);
    return weights;
  }

  /** Restores {@link getWeights}: the windows and their Adam state continue where they were. */
  override async setWeights(weightValues: NamedTensor[]): Promise<void> {
    const rest = await this.extractIterations(weightValues);
    const read = await readOptimizerWeights(rest, STATE_WEIGHT, 'BlockOptimizerRatio');
    const saved = read.state as { state: UpdateMaskState; parameters: SavedParameter[] };
    if (this.bound === undefined) {
      this.bind(variablesFromRegistry(saved.parameters, 'BlockOptimizerRatio'));
    }
    this.loadState(saved.state);
    this.loadStateTensors(read.arrays);
  }

  /** Frees the Adam state and gives the variables back their `trainable` flags as they were before. */
  override dispose(): void {
    this.resetState();
    this.bound?.trainableFlags.restore();
    tf.dispose(this.lastWeights);
    this.lastWeights = [];
    super.dispose();
  }

  /** Builds the mask schedule over the variables and marks the trained ones trainable. */
  private bind(named: readonly NamedVariable[]): void {
    const trainableFlags = new TrainableFlags(named.map(([, v]) => v));
    const masks = new UpdateMaskSchedule(parameterInfoOf(named), this.maskOptions);
    const trained = new Set(masks.parameters.map((p) => p.name));
    for (const [name, variable] of named) variable.trainable = trained.has(name);
    for (const warning of masks.warnings) this.logFn(`BAdam warning: ${warning}`, 'warn');
    if (this.verbose >= 1) {
      this.logFn(
        `BAdam ratio: ${masks.parameters.length} parameters updated on ${masks.maskedElements()} masked entries per step ` +
          `(${masks.maskMode}, windows move every ${masks.switchBlockEvery} steps); frozen: ${masks.frozenNames.join(', ') || 'none'}`,
        'info',
      );
    }
    this.bound = {
      masks,
      named,
      variables: new Map(named),
      names: new Map(named.map(([name, variable]) => [variable.name, name])),
      trainableFlags,
    };
  }

  private requireBound(): BoundRatio {
    if (this.bound === undefined) {
      throw new BadamStateError(
        'this BlockOptimizerRatio was made from a config and has not found its variables yet; give it its ' +
          "weights (setWeights, as tf.loadLayersModel does) or train it with its model's variables (model.fit)",
      );
    }
    return this.bound;
  }

  private stateOf(name: string, k: number, whole: boolean): MaskedState {
    let state = this.states.get(name);
    if (state === undefined) {
      // In a tidy, so the zeros the variables start from are freed once the variables hold them (they were
      // left behind at every window: 2 tensors of k floats per parameter, 2.65 MB per Llama compare run).
      const { m, v } = tf.tidy(() => ({
        m: tf.variable(tf.zeros([k]), false),
        v: tf.variable(tf.zeros([k]), false),
      }));
      state = { m, v, indices: this.masks.keepMask && !whole ? this.indexTensor(name) : undefined };
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

tf.serialization.registerClass(BlockOptimizerRatio);
