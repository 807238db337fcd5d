import {
  type BackendMemoryReport,
  BadamOptionError,
  type BlockOptimizerState,
  type EvaluationResult,
  type MicroBatchResult,
  type NamedArray,
  type OptimizerStepResult,
  type TrainerBackend,
  type TrainingSnapshot,
} from '@badam/core';
import type { UpdateMaskState } from '@badam/ratio';
import * as tf from '@tensorflow/tfjs-core';
import { type BaseOptimizer, learningRateOf, setLearningRate } from './base-optimizer.js';
import { BlockOptimizer } from './block-optimizer.js';
import { BlockOptimizerRatio } from './block-optimizer-ratio.js';
import { clipByGlobalNorm } from './gradient-clipping.js';
import {
  arraysToNamedTensors,
  namedTensorsToArrays,
  renameByPrefix,
  variablesToArrays,
} from './named-arrays.js';
import type { NamedVariable } from './named-variables.js';

/** The model side of training on tfjs: the loss of a micro-batch, its size, and optionally evaluation. */
export interface TfjsTrainingTask<TBatch> {
  /** Mean loss of the micro-batch, as a scalar (built from the model's variables so gradients flow). */
  loss(batch: TBatch): tf.Scalar;
  /** Tokens (or examples) in the micro-batch. */
  tokens(batch: TBatch): number;
  /** Loss and metrics for evaluation. Default: `loss(batch)` weighted by `tokens(batch)`. */
  evaluate?(batch: TBatch): EvaluationResult;
}

/** Options of {@link TfjsTrainerBackend}. */
export interface TfjsTrainerBackendOptions<TBatch> {
  task: TfjsTrainingTask<TBatch>;
  /**
   * BAdam's BlockOptimizer, BlockOptimizerRatio, or any tf.Optimizer to train `namedParameters` in full
   * (the baseline).
   */
  optimizer: BlockOptimizer | BlockOptimizerRatio | BaseOptimizer;
  /** The model's `[name, tf.Variable]` pairs. Needed for a plain tf.Optimizer and BlockOptimizerRatio; a BlockOptimizer knows its own. */
  namedParameters?: readonly NamedVariable[];
  /** Micro-batches per step for BlockOptimizerRatio and plain optimizers (BlockOptimizer has its own option). Default 1. */
  gradientAccumulationSteps?: number;
  /** Global-norm clipping for plain optimizers (BlockOptimizer has its own option). */
  clipGradNorm?: number;
}

/**
 * Connects a tfjs model and optimizer to core's {@link TrainerBackend}, so `Trainer` runs BAdam, its ratio
 * variant, full fine-tuning or LoRA (a plain optimizer over the adapter variables) with the same loop.
 * Snapshots hold every weight and the optimizer's state, with tf variable names replaced by parameter
 * names, so a checkpoint resumes exactly in a new process.
 */
export class TfjsTrainerBackend<TBatch> implements TrainerBackend<TBatch> {
  readonly description: string;
  readonly gradientAccumulationSteps: number;
  private readonly task: TfjsTrainingTask<TBatch>;
  /** Exactly one of these is set: which kind of optimizer drives the step. */
  private readonly block: BlockOptimizer | undefined;
  private readonly ratio: BlockOptimizerRatio | undefined;
  private readonly plain: BaseOptimizer | undefined;
  private readonly named: readonly NamedVariable[];
  private readonly clipGradNorm: number | undefined;
  /** Dense accumulation for BlockOptimizerRatio and plain optimizers. */
  private pending = new Map<string, tf.Tensor>();
  private pendingMicro = 0;
  private lr: number;

  constructor(options: TfjsTrainerBackendOptions<TBatch>) {
    const { task, optimizer } = options;
    if (typeof task?.loss !== 'function' || typeof task.tokens !== 'function') {
      throw new BadamOptionError('task', task, 'an object with loss(batch) and tokens(batch)');
    }
    this.task = task;
    // Not `instanceof`: tf.Optimizer's duck-typed Symbol.hasInstance would accept any optimizer.
    this.block = Object.prototype.isPrototypeOf.call(BlockOptimizer.prototype, optimizer)
      ? (optimizer as BlockOptimizer)
      : undefined;
    this.ratio = Object.prototype.isPrototypeOf.call(BlockOptimizerRatio.prototype, optimizer)
      ? (optimizer as BlockOptimizerRatio)
      : undefined;
    this.plain =
      this.block === undefined && this.ratio === undefined ? (optimizer as BaseOptimizer) : undefined;
    this.clipGradNorm = options.clipGradNorm;
    if (this.block !== undefined) {
      const optimizer = this.block;
      this.named = [...optimizer.backend.variables];
      this.gradientAccumulationSteps = optimizer.engine.gradientAccumulationSteps;
      this.lr = optimizer.lr;
      const p = optimizer.engine.partition;
      this.description =
        `BAdam on tfjs (${tf.getBackend()}): ${p.blocks.length} blocks, switch every ${optimizer.engine.switchBlockEvery} steps ` +
        `(${optimizer.engine.switchMode}), base ${optimizer.engine.baseOptimizer.getClassName()}`;
    } else {
      if (options.namedParameters === undefined) {
        throw new BadamOptionError(
          'namedParameters',
          undefined,
          'the model variables when the optimizer is not a BlockOptimizer',
        );
      }
      this.named = options.namedParameters;
      this.gradientAccumulationSteps = options.gradientAccumulationSteps ?? 1;
      if (this.ratio !== undefined) {
        this.lr = this.ratio.lr;
        this.description = `BAdam ratio on tfjs (${tf.getBackend()}): ${this.ratio.masks.maskMode} masks, windows move every ${this.ratio.masks.switchEvery} steps`;
      } else {
        this.lr = learningRateOf(this.plain!);
        const trained = this.trainedVariables().length;
        this.description = `${this.plain!.getClassName()} on tfjs (${tf.getBackend()}): ${trained} trainable tensors`;
      }
    }
  }

  get activeBlock(): number | undefined {
    return this.block?.activeBlock.index;
  }

  get learningRate(): number {
    return this.lr;
  }

  set learningRate(lr: number) {
    this.lr = lr;
    if (this.block !== undefined) this.block.lr = lr;
    else if (this.ratio !== undefined) this.ratio.lr = lr;
    else setLearningRate(this.plain!, lr);
  }

  private trainedVariables(): tf.Variable[] {
    if (this.ratio !== undefined) return this.ratio.trainableVariables;
    return this.named.map(([, v]) => v).filter((v) => v.trainable);
  }

  forwardBackward(batch: TBatch): MicroBatchResult {
    const tokens = this.task.tokens(batch);
    if (this.block !== undefined) {
      return { loss: this.block.accumulateGradients(() => this.task.loss(batch)), tokens };
    }
    const { value, grads } = tf.variableGrads(() => this.task.loss(batch), this.trainedVariables());
    for (const [name, g] of Object.entries(grads)) {
      const previous = this.pending.get(name);
      this.pending.set(name, previous === undefined ? g : tf.add(previous, g));
      if (previous !== undefined) {
        previous.dispose();
        g.dispose();
      }
    }
    const loss = value.dataSync()[0]!;
    value.dispose();
    return { loss, tokens };
  }

  step(): OptimizerStepResult {
    if (this.block !== undefined) {
      const outcome = this.block.step();
      const gradNorm = this.block.backend.lastGradNorm;
      return { ...outcome, ...(gradNorm !== undefined && outcome.applied ? { gradNorm } : {}) };
    }
    this.pendingMicro += 1;
    if (this.pendingMicro < this.gradientAccumulationSteps) return { applied: false };
    const names = [...this.pending.keys()];
    let gradients = names.map((n) => this.pending.get(n)!);
    const owned: tf.Tensor[] = [];
    if (this.gradientAccumulationSteps > 1) {
      gradients = gradients.map((g) => tf.div(g, this.gradientAccumulationSteps));
      owned.push(...gradients);
    }
    let gradNorm: number | undefined;
    if (this.clipGradNorm !== undefined) {
      const { clipped, norm } = clipByGlobalNorm(gradients, this.clipGradNorm);
      gradNorm = norm;
      gradients = clipped;
      owned.push(...clipped);
    }
    (this.ratio ?? this.plain!).applyGradients(Object.fromEntries(names.map((n, i) => [n, gradients[i]!])));
    for (const t of owned) t.dispose();
    this.discardPending();
    return { applied: true, ...(gradNorm !== undefined ? { gradNorm } : {}) };
  }

  discardGradients(): void {
    if (this.block !== undefined) this.block.discardGradients();
    else this.discardPending();
  }

  private discardPending(): void {
    for (const g of this.pending.values()) g.dispose();
    this.pending.clear();
    this.pendingMicro = 0;
  }

  evaluate(batch: TBatch): EvaluationResult {
    if (this.task.evaluate !== undefined) return this.task.evaluate(batch);
    const loss = tf.tidy(() => this.task.loss(batch).dataSync()[0]!);
    return { loss, weight: this.task.tokens(batch) };
  }

  memory(): BackendMemoryReport {
    const measured = this.block ?? this.ratio;
    if (measured !== undefined) return measured.memory();
    const bytes = tf.memory().numBytes;
    const weights = this.named.reduce((s, [, v]) => s + 4 * v.size, 0);
    let gradients = 0;
    for (const g of this.pending.values()) gradients += 4 * g.size;
    return { bytes, byKind: { weights, gradients }, source: `tf.memory() on the ${tf.getBackend()} backend` };
  }

  async snapshot(): Promise<TrainingSnapshot> {
    const weights = variablesToArrays(this.named);
    if (this.block !== undefined) {
      return {
        weights,
        optimizer: { state: this.block.state(), tensors: await this.block.backend.exportOptimizerTensors() },
      };
    }
    if (this.ratio !== undefined) {
      return { weights, optimizer: { state: this.ratio.state(), tensors: this.ratio.stateTensors() } };
    }
    const optimizer = this.plain!;
    const byVariable = new Map(this.named.map(([name, v]) => [v.name, name]));
    const tensors = await namedTensorsToArrays(await optimizer.getWeights(), (n) =>
      renameByPrefix(n, byVariable),
    );
    return { weights, optimizer: { state: { className: optimizer.getClassName() }, tensors } };
  }

  async restore(snapshot: TrainingSnapshot): Promise<void> {
    const byName = new Map(snapshot.weights.map((w) => [w.name, w]));
    for (const [name, variable] of this.named) {
      const saved = byName.get(name);
      if (saved === undefined)
        throw new BadamOptionError('snapshot weights', name, 'a saved tensor for every model parameter');
      if (saved.shape.join(',') !== variable.shape.join(',')) {
        throw new BadamOptionError(
          `snapshot weight ${name} shape`,
          saved.shape,
          `[${variable.shape.join(', ')}]`,
        );
      }
      tf.tidy(() => variable.assign(tf.tensor(saved.data as Float32Array, variable.shape, 'float32')));
    }
    this.discardGradients();
    if (this.block !== undefined) {
      this.block.loadState(snapshot.optimizer.state as BlockOptimizerState);
      await this.block.backend.importOptimizerTensors(snapshot.optimizer.tensors);
      this.lr = this.block.lr;
    } else if (this.ratio !== undefined) {
      this.ratio.loadState(snapshot.optimizer.state as UpdateMaskState);
      this.ratio.loadStateTensors(snapshot.optimizer.tensors);
    } else {
      const optimizer = this.plain!;
      const byParameter = new Map(this.named.map(([name, v]) => [name, v.name]));
      const tensors = arraysToNamedTensors(snapshot.optimizer.tensors as NamedArray[], (n) =>
        renameByPrefix(n, byParameter),
      );
      try {
        await optimizer.setWeights(tensors);
      } finally {
        for (const t of tensors) t.tensor.dispose();
      }
    }
  }
}
