import {
  type BackendMemoryReport,
  BadamOptionError,
  BadamStateError,
  type BlockActivation,
  type BlockBackend,
  type BlockUpdate,
  type NamedArray,
  type TrainableParameter,
} from '@badam/core';
import * as tf from '@tensorflow/tfjs-core';
import {
  type BaseOptimizer,
  disposeOptimizer,
  freshOptimizerLike,
  setLearningRate,
} from './base-optimizer.js';
import { clipByGlobalNorm } from './gradient-clipping.js';
import { arraysToNamedTensors, namedTensorsToArrays, renameByPrefix } from './named-arrays.js';
import type { NamedTensor } from './named-tensor.js';
import type { NamedVariable } from './named-variables.js';

/** Options of a {@link TfjsBlockBackend}. */
export interface TfjsBlockBackendOptions {
  /** Clip the active block's gradients to this global L2 norm before each update. Default: no clipping. */
  clipGradNorm?: number;
}

/**
 * BAdam's backend on TensorFlow.js: core's `BlockBackend` contract over `tf.Variable`s.
 *
 * Weights are fp32 variables (tfjs has no 16-bit float dtype, so each weight is its own master and no
 * copy is made). On activation the block's variables become `trainable` (all others not), and a fresh base
 * optimizer is created from the template; gradients handed in with {@link addGradients} are summed until
 * the update, which scales them, clips them, sets the learning rate and calls the optimizer; on
 * deactivation the optimizer (its moments) and any pending gradients are disposed.
 */
export class TfjsBlockBackend implements BlockBackend<BaseOptimizer> {
  /** The model's variables by parameter name. */
  readonly variables: ReadonlyMap<string, tf.Variable>;
  private readonly clipGradNorm: number | undefined;
  private readonly weightBytes: number;
  private active: readonly TrainableParameter[] = [];
  private optimizer: BaseOptimizer | undefined;
  private pending = new Map<string, tf.Tensor>();
  private optimizerStateBytes = 0;
  private peak = 0;
  private gradNorm: number | undefined;

  constructor(namedVariables: readonly NamedVariable[], options: TfjsBlockBackendOptions = {}) {
    this.variables = new Map(namedVariables);
    if (options.clipGradNorm !== undefined && !(options.clipGradNorm > 0)) {
      throw new BadamOptionError('clipGradNorm', options.clipGradNorm, 'a number > 0');
    }
    this.clipGradNorm = options.clipGradNorm;
    this.weightBytes = namedVariables.reduce((n, [, v]) => n + 4 * v.size, 0);
    for (const variable of this.variables.values()) variable.trainable = false;
  }

  /** The variables of the parameters trained now, in block order. */
  get activeVariables(): tf.Variable[] {
    return this.active.map((p) => this.variables.get(p.name)!);
  }

  /** The global gradient norm of the last update (before clipping), or undefined before the first. */
  get lastGradNorm(): number | undefined {
    return this.gradNorm;
  }

  activateBlock(activation: BlockActivation<BaseOptimizer>): void {
    if (this.optimizer !== undefined) {
      throw new BadamStateError('TfjsBlockBackend: a block is already active; deactivate it first');
    }
    const noDecay = new Set<string>();
    for (const p of activation.parameters) {
      const variable = this.variables.get(p.name);
      if (variable === undefined)
        throw new BadamOptionError('parameter', p.name, 'a parameter of this backend');
      variable.trainable = true;
      if (!p.weightDecay) noDecay.add(variable.name);
    }
    this.active = activation.parameters;
    this.optimizer = freshOptimizerLike(activation.baseOptimizer, noDecay);
    this.optimizerStateBytes = 0;
  }

  deactivateBlock(_activation: BlockActivation<BaseOptimizer>): void {
    for (const p of this.active) this.variables.get(p.name)!.trainable = false;
    if (this.optimizer !== undefined) disposeOptimizer(this.optimizer);
    this.optimizer = undefined;
    this.optimizerStateBytes = 0;
    for (const g of this.pending.values()) g.dispose();
    this.pending.clear();
    this.active = [];
  }

  /**
   * Adds gradients (keyed by parameter name) to the ones pending for the next update. The backend takes
   * ownership of the tensors. Gradients of parameters that are not trainable now are refused.
   */
  addGradients(gradients: ReadonlyMap<string, tf.Tensor>): void {
    for (const [name, gradient] of gradients) {
      if (!this.active.some((p) => p.name === name)) {
        for (const g of gradients.values()) g.dispose();
        throw new BadamStateError(
          `gradient for ${JSON.stringify(name)}, which is not trainable now; compute gradients for the active block only`,
        );
      }
      const previous = this.pending.get(name);
      if (previous === undefined) {
        this.pending.set(name, gradient);
      } else {
        this.pending.set(name, tf.add(previous, gradient));
        previous.dispose();
        gradient.dispose();
      }
    }
    this.notePeak();
  }

  applyUpdate(update: BlockUpdate): void {
    const optimizer = this.optimizer;
    if (optimizer === undefined)
      throw new BadamStateError('TfjsBlockBackend: applyUpdate without an active block');
    const present = this.active.filter((p) => this.pending.has(p.name));
    let gradients = present.map((p) => this.pending.get(p.name)!);
    const owned: tf.Tensor[] = [];
    if (update.gradientScale !== 1) {
      gradients = gradients.map((g) => tf.mul(g, update.gradientScale));
      owned.push(...gradients);
    }
    if (this.clipGradNorm !== undefined) {
      const { clipped, norm } = clipByGlobalNorm(gradients, this.clipGradNorm);
      this.gradNorm = norm;
      gradients = clipped;
      owned.push(...clipped);
    }
    const byName = new Map(present.map((p, i) => [p.name, gradients[i]!]));
    // Every active variable, in the same order at every step: tf.train.* optimizers index their state by
    // position in this list. A parameter without a gradient gets `null`, which they skip.
    const list = this.active.map((p) => ({
      name: this.variables.get(p.name)!.name,
      tensor: byName.get(p.name) ?? null,
    })) as NamedTensor[];
    setLearningRate(optimizer, update.lr);
    const before = tf.memory().numBytes;
    optimizer.applyGradients(list);
    this.optimizerStateBytes += tf.memory().numBytes - before;
    this.notePeak();
    for (const t of owned) t.dispose();
    for (const g of this.pending.values()) g.dispose();
    this.pending.clear();
  }

  discardGradients(): void {
    for (const g of this.pending.values()) g.dispose();
    this.pending.clear();
  }

  /**
   * Memory from `tf.memory()`: `bytes` is everything tfjs holds now; `byKind` splits out the model's weights,
   * pending gradients and the optimizer state (measured as the bytes the base optimizer's steps added),
   * and `other` is the rest (inputs, activations alive outside a step, the caller's tensors).
   */
  memory(): BackendMemoryReport {
    const bytes = tf.memory().numBytes;
    let gradients = 0;
    for (const g of this.pending.values()) gradients += 4 * g.size;
    const optimizerState = this.optimizerStateBytes;
    this.peak = Math.max(this.peak, bytes);
    return {
      bytes,
      peakBytes: this.peak,
      byKind: {
        weights: this.weightBytes,
        gradients,
        optimizerState,
        other: Math.max(0, bytes - this.weightBytes - gradients - optimizerState),
      },
      source: `tf.memory() on the ${tf.getBackend()} backend`,
    };
  }

  /** Records tf.memory() for the peak; called where memory is highest (gradients held, after an update). */
  notePeak(): void {
    this.peak = Math.max(this.peak, tf.memory().numBytes);
  }

  /**
   * The active block's optimizer state as named arrays for checkpoints: the base optimizer's `getWeights()`,
   * with tf variable names replaced by parameter names (variable names differ between processes).
   */
  async exportOptimizerTensors(): Promise<NamedArray[]> {
    if (this.optimizer === undefined) return [];
    const byVariable = new Map([...this.variables].map(([name, v]) => [v.name, name]));
    return namedTensorsToArrays(await this.optimizer.getWeights(), (name) =>
      renameByPrefix(name, byVariable),
    );
  }

  /** Restores {@link exportOptimizerTensors} into the active block's (fresh) optimizer. */
  async importOptimizerTensors(arrays: readonly NamedArray[]): Promise<void> {
    if (this.optimizer === undefined)
      throw new BadamStateError('TfjsBlockBackend: no active block to restore optimizer state into');
    if (arrays.length === 0) return;
    const byParameter = new Map([...this.variables].map(([name, v]) => [name, v.name]));
    const before = tf.memory().numBytes;
    const tensors = arraysToNamedTensors(arrays, (name) => renameByPrefix(name, byParameter));
    try {
      await this.optimizer.setWeights(tensors);
    } finally {
      for (const t of tensors) t.tensor.dispose();
    }
    // The optimizer's variables keep the buffers of the tensors just disposed: what remains is its state.
    this.optimizerStateBytes = tf.memory().numBytes - before;
  }

  /** The base optimizer of the active block (for checkpoints of its moments). */
  get activeOptimizer(): BaseOptimizer | undefined {
    return this.optimizer;
  }
}
