import { adamStateTensors, readAdamState, tensorsByName } from '../checkpoint/optimizer-tensors.js';
import { bytesPerElement } from '../dtype.js';
import { BadamOptionError, BadamStateError } from '../errors.js';
import type { NamedArray } from '../named-array.js';
import { roundToDType } from '../numeric/round-to-dtype.js';
import { adamwUpdate, type ResolvedAdamWConfig } from '../optimizer/adamw.js';
import type {
  BackendMemoryReport,
  BlockActivation,
  BlockUpdate,
  CheckpointableBlockBackend,
  MemoryKind,
} from '../optimizer/block-backend.js';
import { adamwConfigOf, type OptimizerDescription } from '../optimizer/optimizer-description.js';
import { type NamedParameterInfo, numel, validateNamedParameters } from '../parameters.js';

/** A parameter with its values, as {@link ReferenceBackend} stores it. */
export interface ReferenceParameter extends NamedParameterInfo {
  /** Initial values (copied and rounded to `dtype`). */
  readonly values: ArrayLike<number>;
}

interface ActiveState {
  readonly master: Float32Array;
  readonly grad: Float32Array;
  readonly m: Float32Array;
  readonly v: Float32Array;
  readonly decay: boolean;
}

/**
 * BAdam's semantics on plain `Float32Array`s: the CPU reference every real backend is compared with, and
 * a backend for tests of code built on core. Weights are stored rounded to their dtype (bf16 / fp16
 * values kept in fp32 slots); the active block gets fp32 masters (16-bit weights only: fp32 weights are
 * their own master), fp32 gradient accumulators and AdamW moments, all dropped on deactivation. Gradients are supplied by the caller with
 * {@link ReferenceBackend.accumulateGradients} — only for trainable parameters, as backward would.
 *
 * @example
 * ```ts
 * const backend = new ReferenceBackend(parameters);
 * const optimizer = new BlockOptimizer({ baseOptimizer: { type: 'adamw', weightDecay: 0.01 },
 *   namedParameters: parameters, learningRate: 1e-3, switchBlockEvery: 10 }, backend);
 * backend.accumulateGradients(new Map(optimizer.trainableNames.map((name) => [name, gradientOf(name)])));
 * optimizer.step();
 * ```
 */
export class ReferenceBackend implements CheckpointableBlockBackend<OptimizerDescription, ArrayLike<number>> {
  private readonly weights = new Map<string, Float32Array>();
  private readonly infos = new Map<string, NamedParameterInfo>();
  private active = new Map<string, ActiveState>();
  private config: ResolvedAdamWConfig | undefined;
  private stepsInBlock = 0;
  private peak = 0;

  constructor(parameters: readonly ReferenceParameter[]) {
    validateNamedParameters(parameters, 'parameters');
    for (const p of parameters) {
      const n = numel(p.shape);
      if (p.values.length !== n) {
        throw new BadamOptionError(
          `parameters ${p.name} values`,
          `${p.values.length} values`,
          `${n} values for shape [${p.shape.join(', ')}]`,
        );
      }
      this.weights.set(p.name, roundToDType(Float32Array.from(p.values), p.dtype));
      this.infos.set(p.name, { name: p.name, shape: [...p.shape], dtype: p.dtype });
    }
    this.notePeak();
  }

  /** The current weights of `name` (a copy), as stored: rounded to the parameter's dtype. */
  weight(name: string): Float32Array {
    return Float32Array.from(this.requireWeight(name));
  }

  /** Name, shape and dtype of a parameter. */
  parameterInfo(name: string): NamedParameterInfo {
    this.requireWeight(name);
    return this.infos.get(name)!;
  }

  /** Names of the parameters trainable now. */
  get trainableNames(): string[] {
    return [...this.active.keys()];
  }

  /** Adds gradients (by parameter name) to the accumulators of the trainable parameters. */
  accumulateGradients(gradients: ReadonlyMap<string, ArrayLike<number>>): void {
    for (const [name, gradient] of gradients) this.accumulateGradient(name, gradient);
  }

  /** Adds `gradient` to the accumulator of trainable parameter `name`. */
  accumulateGradient(name: string, gradient: ArrayLike<number>): void {
    const state = this.active.get(name);
    if (state === undefined) {
      this.requireWeight(name);
      throw new BadamStateError(
        `parameter ${JSON.stringify(name)} is not trainable now (trainable: ${this.trainableNames.join(', ')}); compute gradients for the active block only`,
      );
    }
    if (gradient.length !== state.grad.length) {
      throw new BadamOptionError(
        `gradient of ${name}`,
        `${gradient.length} values`,
        `${state.grad.length} values`,
      );
    }
    for (let i = 0; i < gradient.length; i++) state.grad[i] = state.grad[i]! + gradient[i]!;
  }

  activateBlock(activation: BlockActivation<OptimizerDescription>): void {
    if (this.active.size > 0) {
      throw new BadamStateError('ReferenceBackend: a block is already active; deactivate it first');
    }
    this.config = adamwConfigOf(activation.baseOptimizer);
    this.stepsInBlock = 0;
    const active = new Map<string, ActiveState>();
    for (const p of activation.parameters) {
      const weight = this.requireWeight(p.name);
      const n = weight.length;
      active.set(p.name, {
        // fp32 weights are their own master; 16-bit weights get an fp32 copy.
        master: p.dtype === 'float32' ? weight : Float32Array.from(weight),
        grad: new Float32Array(n),
        m: new Float32Array(n),
        v: new Float32Array(n),
        decay: p.weightDecay,
      });
    }
    this.active = active;
    this.notePeak();
  }

  deactivateBlock(_activation: BlockActivation<OptimizerDescription>): void {
    this.active = new Map();
  }

  applyUpdate(update: BlockUpdate): void {
    const config = this.config;
    if (config === undefined || this.active.size === 0) {
      throw new BadamStateError('ReferenceBackend: applyUpdate without an active block');
    }
    for (const [name, state] of this.active) {
      adamwUpdate(state.master, state.grad, state.m, state.v, config, {
        lr: update.lr,
        step: update.stepInBlock,
        gradientScale: update.gradientScale,
        decay: state.decay,
      });
      const weight = this.requireWeight(name);
      if (state.master !== weight) {
        weight.set(state.master);
        roundToDType(weight, this.infos.get(name)!.dtype);
      }
      state.grad.fill(0);
    }
    this.stepsInBlock = update.stepInBlock;
  }

  discardGradients(): void {
    for (const state of this.active.values()) state.grad.fill(0);
  }

  gradientSumOfSquares(): number {
    let sum = 0;
    for (const state of this.active.values()) for (const g of state.grad) sum += g * g;
    return sum;
  }

  /**
   * The active block's AdamW state under the checkpoint names every backend uses (`<name>.exp_avg`,
   * `<name>.exp_avg_sq`, `<name>.step`, and `<name>.master` for 16-bit weights).
   */
  exportOptimizerTensors(): NamedArray[] {
    // Before its first update a block has no state to save (PyTorch's state is empty then too).
    if (this.stepsInBlock === 0) return [];
    return [...this.active].flatMap(([name, s]) =>
      adamStateTensors(this.infos.get(name)!, {
        expAvg: s.m,
        expAvgSq: s.v,
        step: this.stepsInBlock,
        master: s.master !== this.weights.get(name) ? s.master : undefined,
      }),
    );
  }

  /** Restores {@link exportOptimizerTensors} into the active block (activate the same block first). */
  importOptimizerTensors(tensors: readonly NamedArray[], stepInBlock: number): void {
    this.stepsInBlock = stepInBlock;
    if (stepInBlock === 0) return; // activated afresh: nothing to restore
    const byName = tensorsByName(tensors);
    for (const [name, s] of this.active) {
      const own = s.master !== this.weights.get(name);
      const saved = readAdamState(byName, this.infos.get(name)!, { expectedStep: stepInBlock, master: own });
      s.m.set(saved.expAvg);
      s.v.set(saved.expAvgSq);
      if (saved.master !== undefined) s.master.set(saved.master);
    }
  }

  /** Every weight as fp32 values, in model order. */
  readWeights(): NamedArray[] {
    return [...this.weights].map(([name, w]) => ({
      name,
      dtype: 'float32',
      shape: [...this.infos.get(name)!.shape],
      data: Float32Array.from(w),
    }));
  }

  /** Overwrites every weight given (rounded to each parameter's dtype), and the masters of the active block. */
  writeWeights(weights: ReadonlyMap<string, NamedArray>): void {
    for (const [name, w] of weights) {
      this.setWeight(name, w.data as Float32Array);
      const state = this.active.get(name);
      if (state !== undefined && state.master !== this.weights.get(name))
        state.master.set(this.weights.get(name)!);
    }
  }

  /** Overwrites a weight (e.g. from a checkpoint); values are rounded to the parameter's dtype. */
  setWeight(name: string, values: ArrayLike<number>): void {
    const weight = this.requireWeight(name);
    if (values.length !== weight.length) {
      throw new BadamOptionError(`values of ${name}`, `${values.length} values`, `${weight.length} values`);
    }
    weight.set(values);
    roundToDType(weight, this.infos.get(name)!.dtype);
  }

  memory(): BackendMemoryReport {
    const byKind = this.bytesByKind();
    const bytes = Object.values(byKind).reduce((a, b) => a + b, 0);
    return { bytes, peakBytes: Math.max(this.peak, bytes), byKind, source: 'ReferenceBackend arrays' };
  }

  private bytesByKind(): Record<
    Extract<MemoryKind, 'weights' | 'masters' | 'gradients' | 'optimizerState'>,
    number
  > {
    let weights = 0;
    for (const [name, w] of this.weights) weights += w.length * bytesPerElement(this.infos.get(name)!.dtype);
    let masters = 0;
    let gradients = 0;
    let optimizerState = 0;
    for (const [name, s] of this.active) {
      if (s.master !== this.weights.get(name)) masters += s.master.byteLength;
      gradients += s.grad.byteLength;
      optimizerState += s.m.byteLength + s.v.byteLength;
    }
    return { weights, masters, gradients, optimizerState };
  }

  private notePeak(): void {
    const bytes = Object.values(this.bytesByKind()).reduce((a, b) => a + b, 0);
    this.peak = Math.max(this.peak, bytes);
  }

  private requireWeight(name: string): Float32Array {
    const weight = this.weights.get(name);
    if (weight === undefined)
      throw new BadamOptionError('parameter name', name, 'a parameter of this backend');
    return weight;
  }
}
