import {
  type BackendMemoryReport,
  BadamOptionError,
  BadamStateError,
  type Block,
  BlockOptimizer as BlockOptimizerEngine,
  type BlockOptimizerState,
  consoleLog,
  type BlockOptimizerOptions as EngineOptions,
  type LogFn,
  type StepOutcome,
} from '@badam/core';
import * as tf from '@tensorflow/tfjs-core';
import {
  type BaseOptimizer,
  baseOptimizerName,
  learningRateOf,
  validateBaseOptimizer,
} from './base-optimizer.js';
import { assertGradientsRegistered } from './gradients-registered.js';
import type { NamedTensor } from './named-tensor.js';
import { type NamedVariable, parameterInfoOf, validateNamedVariables } from './named-variables.js';
import { TfjsBlockBackend } from './tfjs-block-backend.js';

/** Options of the tfjs {@link BlockOptimizer}: core's options, with tfjs types for the optimizer and parameters. */
export interface BlockOptimizerOptions
  extends Omit<EngineOptions<BaseOptimizer>, 'baseOptimizer' | 'namedParameters' | 'learningRate'> {
  /**
   * Core's optimizer description (`{ type: 'adamw', learningRate, betas, epsilon, weightDecay }`, trained
   * with {@link AdamW}) or any tf.Optimizer (`tf.train.sgd`, `momentum`, `rmsprop`, `adagrad`, `adadelta`,
   * `adam`, `adamax`, {@link AdamW}); each block gets a fresh copy.
   */
  baseOptimizer: BaseOptimizer;
  /** The model's parameters as `[name, tf.Variable]` pairs, in model order (see `namedVariablesFromLayersModel`). */
  namedParameters: readonly NamedVariable[];
  /** Learning rate of the first step. Default: the base optimizer's. */
  learningRate?: number;
}

/**
 * BAdam's BlockOptimizer on TensorFlow.js, a `tf.Optimizer`: wrap any base optimizer and only one block of
 * the model trains at a time, with fresh optimizer state per block, while the rest stays frozen.
 *
 * `minimize` computes gradients for the active block (and `activeModules`) only, so backward stops there;
 * with `gradientAccumulationSteps` each call is one micro-batch. It can be a LayersModel's optimizer:
 * `model.compile({ optimizer, loss })` and `model.fit` then train only the active block.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs';
 * import { BlockOptimizer } from '@badam/tfjs';
 *
 * const optimizer = new BlockOptimizer({
 *   baseOptimizer: { type: 'adamw', learningRate: 1e-5, weightDecay: 0.01 }, // or any tf.Optimizer, e.g. tf.train.adam(1e-5)
 *   namedParameters: [['model.layers.0.mlp.up_proj.weight', upProj0], ...],
 *   switchBlockEvery: 100,
 *   switchMode: 'random',
 * });
 * for (const batch of batches) optimizer.minimize(() => lossOf(batch));
 * ```
 */
export class BlockOptimizer extends tf.Optimizer {
  static get className(): string {
    return 'BlockOptimizer';
  }

  /** Core's engine: partition, schedule, state. */
  readonly engine: BlockOptimizerEngine<BaseOptimizer, TfjsBlockBackend>;
  /** The backend that owns the variables, gradients and optimizer state. */
  readonly backend: TfjsBlockBackend;
  /** tf variable name -> parameter name. */
  private readonly names: ReadonlyMap<string, string>;
  private readonly parameterNames: ReadonlySet<string>;
  private readonly logFn: LogFn;
  private readonly verbose: number;
  private warnedIgnoredGradients = false;

  constructor(options: BlockOptimizerOptions) {
    super();
    if (typeof options !== 'object' || options === null) {
      throw new BadamOptionError('options', options, 'an object of BlockOptimizer options');
    }
    const { baseOptimizer, namedParameters, learningRate, ...engineOptions } = options;
    assertGradientsRegistered();
    const base = validateBaseOptimizer(baseOptimizer);
    const named = validateNamedVariables(namedParameters);
    this.names = new Map(named.map(([name, variable]) => [variable.name, name]));
    this.parameterNames = new Set(named.map(([name]) => name));
    this.logFn = engineOptions.logFn ?? consoleLog;
    this.verbose = engineOptions.verbose ?? 1;
    this.backend = new TfjsBlockBackend(named);
    const lr = learningRate ?? (engineOptions.lr === undefined ? learningRateOf(base) : undefined);
    this.engine = new BlockOptimizerEngine(
      {
        ...engineOptions,
        baseOptimizer: base,
        namedParameters: parameterInfoOf(named),
        ...(lr !== undefined ? { learningRate: lr } : {}),
      },
      this.backend,
    );
  }

  /** The learning rate the next update uses; set it each step from a schedule. */
  get lr(): number {
    return this.engine.lr;
  }

  set lr(value: number) {
    this.engine.lr = value;
  }

  /** The active block. */
  get activeBlock(): Block {
    return this.engine.activeBlock;
  }

  /** The variables trained now: the active block's and the active modules'. */
  get trainableVariables(): tf.Variable[] {
    return this.backend.activeVariables;
  }

  /** Outcome of the last micro-batch (whether an update ran, whether the block switched). */
  lastStep: StepOutcome | undefined;

  /**
   * Runs `f`, computes the gradients of its scalar result for the trainable variables only, and counts a
   * micro-batch: every `gradientAccumulationSteps`-th call applies the update (and switches blocks after K
   * updates). `varList` (passed by `LayersModel.fit`) is ignored: the active block decides what trains.
   */
  override minimize(f: () => tf.Scalar, returnCost = false, _varList?: tf.Variable[]): tf.Scalar | null {
    const { value, grads } = this.computeGradients(f);
    this.takeGradients(grads, true);
    this.lastStep = this.engine.step();
    if (returnCost) return value;
    value.dispose();
    return null;
  }

  /**
   * One micro-batch without the update decision: runs `f`, hands the gradients of the trainable variables
   * to the backend, and returns the loss. Follow it with {@link step} (count the micro-batch) or
   * {@link discardGradients} (skip it). This is how the Trainer drives the optimizer.
   */
  accumulateGradients(f: () => tf.Scalar): number {
    const { value, grads } = this.computeGradients(f);
    this.takeGradients(grads, true);
    const loss = value.dataSync()[0]!;
    value.dispose();
    return loss;
  }

  /** Counts one micro-batch whose gradients were accumulated; every `gradientAccumulationSteps`-th call updates. */
  step(): StepOutcome {
    this.lastStep = this.engine.step();
    return this.lastStep;
  }

  /** Drops the gradients accumulated for the current step and its micro-batch count. */
  discardGradients(): void {
    this.engine.discardPendingGradients();
  }

  /** Gradients of `f` for the trainable variables only (keyed by variable name, as tf does). */
  override computeGradients(
    f: () => tf.Scalar,
    _varList?: tf.Variable[],
  ): { value: tf.Scalar; grads: tf.NamedTensorMap } {
    return tf.variableGrads(f, this.trainableVariables);
  }

  /**
   * Applies gradients computed elsewhere (keyed by tf variable name or by parameter name). Gradients of
   * parameters that are not trainable now are ignored (with a one-time warning at verbose >= 1); each
   * call counts one micro-batch. The caller keeps ownership of the tensors.
   */
  override applyGradients(variableGradients: tf.NamedTensorMap | NamedTensor[]): void {
    this.takeGradients(variableGradients, false);
    this.lastStep = this.engine.step();
  }

  /** Plain-data state of the schedule and counters; see core's `BlockOptimizer.state()`. */
  state(): BlockOptimizerState {
    return this.engine.state();
  }

  /** Restores `state()`: the same block order continues, the saved block is activated afresh. */
  loadState(state: BlockOptimizerState): void {
    this.engine.loadState(state);
  }

  /** Memory measured with `tf.memory()`, split by kind. */
  memory(): BackendMemoryReport {
    return this.backend.memory();
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      switchBlockEvery: this.engine.switchBlockEvery,
      switchMode: this.engine.switchMode,
      gradientAccumulationSteps: this.engine.gradientAccumulationSteps,
      learningRate: this.engine.lr,
      baseOptimizer: baseOptimizerName(this.engine.baseOptimizer),
      ...(this.engine.clipGradNorm !== undefined ? { clipGradNorm: this.engine.clipGradNorm } : {}),
    };
  }

  /** Frees the active block's optimizer state and pending gradients. The model's variables stay. */
  override dispose(): void {
    this.engine.dispose();
    super.dispose();
  }

  private takeGradients(gradients: tf.NamedTensorMap | NamedTensor[], owned: boolean): void {
    const entries: Array<[string, tf.Tensor]> = Array.isArray(gradients)
      ? gradients.filter((g) => g.tensor != null).map((g) => [g.name, g.tensor])
      : Object.entries(gradients);
    const trainable = new Map<string, tf.Tensor>();
    const ignored: string[] = [];
    for (const [key, tensor] of entries) {
      const name = this.names.get(key) ?? (this.parameterNames.has(key) ? key : undefined);
      if (name !== undefined && this.engine.isTrainable(name)) {
        trainable.set(name, owned ? tensor : tf.clone(tensor));
      } else {
        ignored.push(name ?? key);
        if (owned) tensor.dispose();
      }
    }
    if (ignored.length > 0 && !owned && !this.warnedIgnoredGradients && this.verbose >= 1) {
      this.warnedIgnoredGradients = true;
      this.logFn(
        `BAdam warning: ignored gradients of ${ignored.length} parameter(s) outside the active block (e.g. ${ignored[0]}); ` +
          'compute gradients for optimizer.trainableVariables only to save the work',
        'warn',
      );
    }
    if (trainable.size === 0 && this.engine.trainableNames.length > 0) {
      throw new BadamStateError(
        `no gradient for any trainable parameter (${this.engine.trainableNames.slice(0, 3).join(', ')}...); ` +
          'key gradients by tf variable name or by parameter name',
      );
    }
    this.backend.accumulateGradients(trainable);
  }
}
