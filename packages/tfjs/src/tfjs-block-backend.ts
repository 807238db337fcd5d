import {
  type BackendMemoryReport,
  BadamOptionError,
  BadamStateError,
  type BlockActivation,
  type BlockUpdate,
  type CheckpointableBlockBackend,
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
import { sumOfSquares } from './global-norm.js';
import { assignWeights, variablesToArrays } from './named-arrays.js';
import type { NamedTensor } from './named-tensor.js';
import type { NamedVariable } from './named-variables.js';
import { exportOptimizerState, importOptimizerState, type ParameterVariable } from './optimizer-state.js';

/** Options of a {@link TfjsBlockBackend}. None yet: clipping moved to the BlockOptimizer. */
export type TfjsBlockBackendOptions = Record<string, never>;

/**
 * BAdam's backend on TensorFlow.js: core's `CheckpointableBlockBackend` contract over `tf.Variable`s.
 *
 * Weights are fp32 variables (tfjs has no 16-bit float dtype, so each weight is its own master and no
 * copy is made). On activation the block's variables become `trainable` (all others not), and a fresh base
 * optimizer is created from the template (an {@link AdamW} for an optimizer description); gradients
 * handed in with {@link accumulateGradients} are summed until the update, which multiplies them once by
 * core's gradient scale (mean and clip coefficient), sets the learning rate and calls the optimizer; on
 * deactivation the optimizer (its moments) and any pending gradients are disposed.
 */
export class TfjsBlockBackend implements CheckpointableBlockBackend<BaseOptimizer, tf.Tensor> {
  /** The model's variables by parameter name. */
  readonly variables: ReadonlyMap<string, tf.Variable>;
  private readonly named: readonly NamedVariable[];
  private readonly weightBytes: number;
  private active: readonly TrainableParameter[] = [];
  private optimizer: tf.Optimizer | undefined;
  private pending = new Map<string, tf.Tensor>();
  private optimizerStateBytes = 0;
  private peak = 0;

  constructor(namedVariables: readonly NamedVariable[], options: TfjsBlockBackendOptions = {}) {
    if ('clipGradNorm' in (options as object)) {
      throw new BadamOptionError(
        'TfjsBlockBackend clipGradNorm',
        (options as { clipGradNorm?: unknown }).clipGradNorm,
        "absent: clipping is the BlockOptimizer's option now (core clips the same way on every backend)",
      );
    }
    this.named = namedVariables;
    this.variables = new Map(namedVariables);
    this.weightBytes = namedVariables.reduce((n, [, v]) => n + 4 * v.size, 0);
    for (const variable of this.variables.values()) variable.trainable = false;
  }

  /** The variables of the parameters trained now, in block order. */
  get activeVariables(): tf.Variable[] {
    return this.active.map((p) => this.variables.get(p.name)!);
  }

  /** The tf.Optimizer of the active block (fresh at every activation). */
  get activeOptimizer(): tf.Optimizer | undefined {
    return this.optimizer;
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
    this.discardGradients();
    this.active = [];
  }

  /**
   * Adds gradients (keyed by parameter name) to the ones pending for the next update. The backend takes
   * ownership of the tensors. Gradients of parameters that are not trainable now are refused.
   */
  accumulateGradients(gradients: ReadonlyMap<string, tf.Tensor>): void {
    for (const [name, gradient] of gradients) {
      if (!this.active.some((p) => p.name === name)) {
        for (const g of gradients.values()) if (!g.isDisposed && !this.isPending(g)) g.dispose();
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

  gradientSumOfSquares(): number {
    return sumOfSquares(this.pending.values());
  }

  applyUpdate(update: BlockUpdate): void {
    const optimizer = this.optimizer;
    if (optimizer === undefined)
      throw new BadamStateError('TfjsBlockBackend: applyUpdate without an active block');
    const scaled = new Map<string, tf.Tensor>();
    for (const [name, g] of this.pending)
      scaled.set(name, update.gradientScale === 1 ? g : tf.mul(g, update.gradientScale));
    // Every active variable, in the same order at every step: tf.train.* optimizers index their state by
    // position in this list. A parameter without a gradient gets `null`, which they skip.
    const list = this.active.map((p) => ({
      name: this.variables.get(p.name)!.name,
      tensor: scaled.get(p.name) ?? null,
    })) as NamedTensor[];
    setLearningRate(optimizer, update.lr);
    const before = tf.memory().numBytes;
    optimizer.applyGradients(list);
    this.optimizerStateBytes += tf.memory().numBytes - before;
    this.notePeak();
    for (const [name, t] of scaled) if (t !== this.pending.get(name)) t.dispose();
    this.discardGradients();
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

  /** Every weight as fp32 arrays, in model order. */
  readWeights(): NamedArray[] {
    return variablesToArrays(this.named);
  }

  /** Assigns every weight given (fp32 values of the variable's shape). */
  writeWeights(weights: ReadonlyMap<string, NamedArray>): void {
    assignWeights(
      this.named.filter(([name]) => weights.has(name)),
      [...weights.values()],
    );
  }

  /**
   * The active block's optimizer state under the checkpoint names every backend uses (`<param>.exp_avg`,
   * `<param>.exp_avg_sq`, `<param>.step`; PyTorch's names for other tf.train optimizers' state).
   */
  async exportOptimizerTensors(): Promise<NamedArray[]> {
    if (this.optimizer === undefined) return [];
    return exportOptimizerState(this.optimizer, this.activeParameters());
  }

  /** Restores {@link exportOptimizerTensors} (from any backend) into the active block's fresh optimizer. */
  async importOptimizerTensors(tensors: readonly NamedArray[], stepInBlock: number): Promise<void> {
    if (this.optimizer === undefined)
      throw new BadamStateError('TfjsBlockBackend: no active block to restore optimizer state into');
    const before = tf.memory().numBytes;
    await importOptimizerState(this.optimizer, this.activeParameters(), tensors, stepInBlock);
    // The optimizer's variables keep the buffers of the tensors just disposed: what remains is its state.
    this.optimizerStateBytes = tf.memory().numBytes - before;
  }

  private activeParameters(): ParameterVariable[] {
    return this.active.map((p) => ({ name: p.name, variable: this.variables.get(p.name)! }));
  }

  private isPending(tensor: tf.Tensor): boolean {
    for (const g of this.pending.values()) if (g === tensor) return true;
    return false;
  }
}
