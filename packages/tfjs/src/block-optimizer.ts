import {
  type BackendMemoryReport,
  BadamOptionError,
  BadamStateError,
  type Block,
  BlockOptimizer as BlockOptimizerEngine,
  type BlockOptimizerState,
  consoleLog,
  type BlockOptimizerOptions as EngineOptions,
  isOptimizerDescription,
  type LogFn,
  type StepOutcome,
  TRAINING_DEFAULTS,
} from '@badam/core';
import * as tf from '@tensorflow/tfjs-core';
import {
  type BaseOptimizer,
  baseOptimizerName,
  deserializeBaseOptimizer,
  learningRateOf,
  resolveBaseOptimizer,
  serializeBaseOptimizer,
} from './base-optimizer.js';
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
import { TfjsBlockBackend } from './tfjs-block-backend.js';

/** The options of a BlockOptimizer that a config carries: everything but the parameters, the base optimizer and `logFn`. */
type SerializableOptions = Omit<BlockOptimizerOptions, 'baseOptimizer' | 'namedParameters' | 'logFn'>;

/** What a BlockOptimizer holds once it knows its variables. */
interface Bound {
  readonly engine: BlockOptimizerEngine<BaseOptimizer, TfjsBlockBackend>;
  readonly backend: TfjsBlockBackend;
  readonly named: readonly NamedVariable[];
  /** tf variable name -> parameter name. */
  readonly names: ReadonlyMap<string, string>;
  readonly parameterNames: ReadonlySet<string>;
  readonly trainableFlags: TrainableFlags;
}

/** The weight that carries BAdam's schedule and counters among a BlockOptimizer's weights (`badam/state`). */
const STATE_WEIGHT = 'state';

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

  /** The base optimizer as given (what a config saves). */
  private readonly baseOptimizer: BaseOptimizer;
  /** The same as the engine takes it: a description resolved once, here. */
  private readonly resolvedBaseOptimizer: BaseOptimizer;
  private readonly options: SerializableOptions;
  private readonly logFn: LogFn;
  private readonly verbose: number;
  /** The parameters of a BlockOptimizer made from a config, until it finds their variables. */
  private readonly saved: readonly SavedParameter[] | undefined;
  private bound: Bound | undefined;
  /** Tensors handed out by the last getWeights() (tf.LayersModel.save does not dispose them). */
  private lastWeights: tf.Tensor[] = [];
  private warnedIgnoredGradients = false;

  /**
   * @param options - the parameters, the base optimizer and BAdam's options.
   * @param saved - internal: the parameters of a config (see {@link BlockOptimizer.fromConfig}); the
   *   variables are found when the optimizer gets its weights or its first `minimize`.
   */
  constructor(options: BlockOptimizerOptions, saved?: readonly SavedParameter[]) {
    super();
    if (typeof options !== 'object' || options === null) {
      throw new BadamOptionError('options', options, 'an object of BlockOptimizer options');
    }
    const { baseOptimizer, namedParameters, logFn, ...serializable } = options;
    assertGradientsRegistered();
    this.logFn = logFn ?? consoleLog;
    this.resolvedBaseOptimizer = resolveBaseOptimizer(baseOptimizer, (message) =>
      this.logFn(`BAdam warning: ${message}`, 'warn'),
    );
    this.baseOptimizer = baseOptimizer;
    this.options = serializable;
    this.verbose = serializable.verbose ?? TRAINING_DEFAULTS.verbose;
    this.saved = saved;
    if (saved === undefined) this.bind(validateNamedVariables(namedParameters));
  }

  /** Core's engine: partition, schedule, state. */
  get engine(): BlockOptimizerEngine<BaseOptimizer, TfjsBlockBackend> {
    return this.requireBound().engine;
  }

  /** The backend that owns the variables, gradients and optimizer state. */
  get backend(): TfjsBlockBackend {
    return this.requireBound().backend;
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
   * updates). `varList` (passed by `LayersModel.fit`) does not choose what trains, the active block does;
   * it gives an optimizer made from a config its variables, and one that trains none of them throws.
   */
  override minimize(f: () => tf.Scalar, returnCost = false, varList?: tf.Variable[]): tf.Scalar | null {
    if (this.bound === undefined) this.bind(variablesFromList(this.saved!, varList, 'BlockOptimizer'));
    else assertVariablesListed(this.bound.named, varList, 'BlockOptimizer');
    const { value, grads } = this.computeGradients(f);
    this.takeGradients(grads, true);
    this.lastStep = this.engine.step();
    this.iterations_ = this.engine.globalStepCount;
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
    this.iterations_ = this.engine.globalStepCount;
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
    this.iterations_ = this.engine.globalStepCount;
  }

  /** Plain-data state of the schedule and counters; see core's `BlockOptimizer.state()`. */
  state(): BlockOptimizerState {
    return this.engine.state();
  }

  /** Restores `state()`: the same block order continues, the saved block is activated afresh. */
  loadState(state: BlockOptimizerState): void {
    this.engine.loadState(state);
    this.iterations_ = this.engine.globalStepCount;
  }

  /** Memory measured with `tf.memory()`, split by kind. */
  memory(): BackendMemoryReport {
    return this.backend.memory();
  }

  /**
   * The optimizer's config, plain data that {@link BlockOptimizer.fromConfig} turns back into an equal
   * optimizer (and that a LayersModel saves with `includeOptimizer`). `badam` holds the options, the base
   * optimizer and the parameter names as base64 JSON, which tfjs-layers' key conversion leaves alone; the
   * other entries are there to be read.
   */
  override getConfig(): tf.serialization.ConfigDict {
    const engine = this.bound?.engine;
    return {
      baseOptimizer: baseOptimizerName(this.baseOptimizer),
      ...(engine !== undefined
        ? {
            learningRate: engine.lr,
            switchBlockEvery: engine.switchBlockEvery,
            switchMode: engine.switchMode,
            gradientAccumulationSteps: engine.gradientAccumulationSteps,
            ...(engine.clipGradNorm !== undefined ? { clipGradNorm: engine.clipGradNorm } : {}),
          }
        : {}),
      badam: encodeConfigValue({
        options: this.options,
        baseOptimizer: serializeBaseOptimizer(this.baseOptimizer),
        parameters: this.bound === undefined ? this.saved : savedParametersOf(this.bound.named),
      }),
    };
  }

  /**
   * An optimizer from {@link getConfig}'s config (tf.serialization calls it, e.g. in `tf.loadLayersModel`).
   * It has the parameters' names but not yet their variables: it finds them by the variable names when
   * {@link setWeights} gives it the saved state, or by position in the variable list of its first
   * `minimize` (what `LayersModel.fit` passes).
   */
  static override fromConfig<T extends tf.serialization.Serializable>(
    _cls: tf.serialization.SerializableConstructor<T>,
    config: tf.serialization.ConfigDict,
  ): T {
    const saved = decodeConfigValue(config.badam, 'BlockOptimizer config.badam') as {
      options: SerializableOptions;
      baseOptimizer: unknown;
      parameters: SavedParameter[];
    };
    return new BlockOptimizer(
      {
        ...saved.options,
        baseOptimizer: deserializeBaseOptimizer(saved.baseOptimizer),
        namedParameters: [],
      },
      saved.parameters,
    ) as unknown as T;
  }

  /**
   * The optimizer's weights, as tf.Optimizers give them for `model.save(..., { includeOptimizer: true })`:
   * the iteration count, BAdam's state (schedule, position, counters, RNG, learning rate) as JSON in an
   * int32 tensor of UTF-8 bytes (`badam/state`), and the active block's optimizer tensors under the
   * checkpoint names every backend uses (`badam/<param>.exp_avg`, ...). The tensors stay valid until the
   * next call or {@link dispose}.
   */
  override async getWeights(): Promise<NamedTensor[]> {
    const { engine, backend, named } = this.requireBound();
    tf.dispose(this.lastWeights);
    const state = { state: engine.state(), parameters: savedParametersOf(named) };
    const tensors = await backend.exportOptimizerTensors();
    const weights = optimizerWeights(await this.saveIterations(), STATE_WEIGHT, state, tensors);
    this.lastWeights = weights.map((w) => w.tensor);
    return weights;
  }

  /**
   * Restores {@link getWeights}: the same block order continues from the saved position with the saved
   * block's optimizer state, so training goes on exactly as if it had not stopped. An optimizer made from
   * a config finds its variables here (see {@link BlockOptimizer.fromConfig}). The caller keeps the tensors.
   */
  override async setWeights(weightValues: NamedTensor[]): Promise<void> {
    const rest = await this.extractIterations(weightValues);
    const read = await readOptimizerWeights(rest, STATE_WEIGHT, 'BlockOptimizer');
    const saved = read.state as { state: BlockOptimizerState; parameters: SavedParameter[] };
    if (this.bound === undefined) this.bind(variablesFromRegistry(saved.parameters, 'BlockOptimizer'));
    const { engine, backend } = this.requireBound();
    engine.loadState(saved.state);
    await backend.importOptimizerTensors(read.arrays, engine.stepsInBlock);
    this.iterations_ = engine.globalStepCount;
  }

  /**
   * Frees the active block's optimizer state and pending gradients, and gives the variables back their
   * `trainable` flags as they were before this optimizer (so other optimizers train them again). The
   * model's variables stay.
   */
  override dispose(): void {
    if (this.bound !== undefined) {
      this.bound.engine.dispose();
      this.bound.trainableFlags.restore();
    }
    tf.dispose(this.lastWeights);
    this.lastWeights = [];
    super.dispose();
  }

  /** Creates the backend and the engine over the variables (now, or when a config's variables are found). */
  private bind(named: readonly NamedVariable[]): void {
    const trainableFlags = new TrainableFlags(named.map(([, v]) => v));
    const { learningRate, ...engineOptions } = this.options;
    const base = this.resolvedBaseOptimizer;
    // A description's learning rate is the engine's default already; a tf.Optimizer's is read from its config.
    const lr =
      learningRate ??
      (engineOptions.lr === undefined && !isOptimizerDescription(base) ? learningRateOf(base) : undefined);
    const backend = new TfjsBlockBackend(named);
    const engine = new BlockOptimizerEngine(
      {
        ...engineOptions,
        logFn: this.logFn,
        baseOptimizer: base,
        namedParameters: parameterInfoOf(named),
        ...(lr !== undefined ? { learningRate: lr } : {}),
      },
      backend,
    );
    this.bound = {
      engine,
      backend,
      named,
      names: new Map(named.map(([name, variable]) => [variable.name, name])),
      parameterNames: new Set(named.map(([name]) => name)),
      trainableFlags,
    };
  }

  private requireBound(): Bound {
    if (this.bound === undefined) {
      throw new BadamStateError(
        'this BlockOptimizer was made from a config and has not found its variables yet; give it its weights ' +
          "(setWeights, as tf.loadLayersModel does) or train it with its model's variables (model.fit)",
      );
    }
    return this.bound;
  }

  private takeGradients(gradients: tf.NamedTensorMap | NamedTensor[], owned: boolean): void {
    const entries: Array<[string, tf.Tensor]> = Array.isArray(gradients)
      ? gradients.filter((g) => g.tensor != null).map((g) => [g.name, g.tensor])
      : Object.entries(gradients);
    const { names, parameterNames } = this.requireBound();
    const trainable = new Map<string, tf.Tensor>();
    const ignored: string[] = [];
    for (const [key, tensor] of entries) {
      const name = names.get(key) ?? (parameterNames.has(key) ? key : undefined);
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

tf.serialization.registerClass(BlockOptimizer);
