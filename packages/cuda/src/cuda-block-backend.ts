import {
  adamStateTensors,
  adamwConfigOf,
  type BackendMemoryReport,
  BadamOptionError,
  BadamStateError,
  type BlockActivation,
  type BlockUpdate,
  type CheckpointableBlockBackend,
  type DType,
  type NamedArray,
  type NamedParameterInfo,
  type OptimizerDescription,
  type ResolvedAdamWConfig,
  readAdamState,
  tensorsByName,
  validateNamedParameters,
} from '@badam/core';
import type { Device } from './device.js';
import type { DeviceTensor } from './device-tensor.js';

/** A parameter to place on the device: its name, shape, storage dtype and initial values. */
export interface CudaParameter extends NamedParameterInfo {
  /** fp32 values (rounded to `dtype`), or a tensor already on the device (taken over, not copied). */
  readonly values: Float32Array | DeviceTensor;
  /**
   * The dtype of its gradient buffer while it trains: float32 (default), or a 16-bit dtype to halve it (the
   * GEMMs of a backward pass round once per micro-batch, as PyTorch's bf16 `.grad` does; the fused AdamW
   * reads it widened exactly).
   */
  readonly gradientDtype?: 'float32' | 'bfloat16' | 'float16';
}

/** Options of a {@link CudaBlockBackend}. None yet: clipping is the BlockOptimizer's option. */
export type CudaBlockBackendOptions = Record<string, never>;

interface ActiveParameter {
  readonly name: string;
  readonly weight: DeviceTensor;
  /** fp32 master of a 16-bit weight; null for fp32 weights (their own master). */
  readonly master: DeviceTensor | null;
  /** The gradient summed since the last update, allocated (zeroed) on its first request; null before. */
  grad: DeviceTensor | null;
  readonly gradientDtype: 'float32' | 'bfloat16' | 'float16';
  readonly expAvg: DeviceTensor;
  readonly expAvgSq: DeviceTensor;
  readonly decay: boolean;
}

/**
 * BAdam's backend on a {@link Device}: core's `BlockBackend` contract with bf16 / fp16 (or fp32) weights in
 * device memory. Activating a block allocates, for its parameters only, an fp32 master (16-bit weights) and
 * AdamW's two moments; a parameter's gradient buffer (fp32, or its `gradientDtype`) is allocated when first
 * requested and freed after each update, so between updates (and through a model's forward pass) no
 * gradient is held; each update is one fused kernel per parameter that also writes the rounded weight;
 * deactivation frees all of it back to the caching allocator, and {@link memory} shows it.
 *
 * Gradients come from the caller — a model's backward pass — through {@link accumulateGradients} (host
 * arrays or device tensors) or by writing into {@link gradientOf}. Core's BlockOptimizer asks for their
 * sum of squares when clipping is on and folds the clip coefficient into the fused update's gradient scale.
 * Checkpoints use the names every backend uses (`<param>.exp_avg`, `.exp_avg_sq`, `.step`, `.master`).
 *
 * @example
 * ```ts
 * const device = Device.cpu(); // Device.cuda() on a GPU
 * const backend = new CudaBlockBackend(device, parameters); // bf16 weights
 * const optimizer = new BlockOptimizer({ baseOptimizer: { type: 'adamw', learningRate: 1e-5 },
 *   namedParameters: parameters, switchBlockEvery: 50, clipGradNorm: 1 }, backend);
 * backend.accumulateGradients(gradients); // Map of name -> Float32Array or DeviceTensor
 * optimizer.step();
 * ```
 */
export class CudaBlockBackend
  implements CheckpointableBlockBackend<OptimizerDescription, Float32Array | DeviceTensor>
{
  private readonly weights = new Map<string, DeviceTensor>();
  private readonly infos = new Map<string, NamedParameterInfo>();
  private readonly gradientDtypes = new Map<string, 'float32' | 'bfloat16' | 'float16'>();
  private active: ActiveParameter[] = [];
  private config: ResolvedAdamWConfig | undefined;
  private stepsInBlock = 0;

  constructor(
    readonly device: Device,
    parameters: readonly CudaParameter[],
    options: CudaBlockBackendOptions = {},
  ) {
    validateNamedParameters(parameters, 'parameters');
    if ('clipGradNorm' in (options as object)) {
      throw new BadamOptionError(
        'CudaBlockBackend clipGradNorm',
        (options as { clipGradNorm?: unknown }).clipGradNorm,
        "absent: clipping is the BlockOptimizer's option now (core clips the same way on every backend)",
      );
    }
    for (const p of parameters) {
      const shape = [...p.shape];
      if (p.values instanceof Float32Array) {
        this.weights.set(p.name, device.tensor(p.values, shape, p.dtype, 'weights'));
      } else {
        if (
          p.values.dtype !== p.dtype ||
          p.values.numel !== p.values.shape.reduce((a, b) => a * b, 1) ||
          p.values.shape.join() !== shape.join()
        ) {
          throw new BadamOptionError(
            `parameters ${p.name} values`,
            `a ${p.values.dtype} tensor [${p.values.shape.join(', ')}]`,
            `a ${p.dtype} tensor [${shape.join(', ')}]`,
          );
        }
        this.weights.set(p.name, p.values);
      }
      this.infos.set(p.name, { name: p.name, shape, dtype: p.dtype });
      const gradientDtype = p.gradientDtype ?? 'float32';
      if (gradientDtype !== 'float32' && gradientDtype !== 'bfloat16' && gradientDtype !== 'float16')
        throw new BadamOptionError(
          `parameters ${p.name} gradientDtype`,
          gradientDtype,
          "'float32', 'bfloat16' or 'float16'",
        );
      this.gradientDtypes.set(p.name, gradientDtype);
    }
  }

  /** Names of the parameters trainable now. */
  get trainableNames(): string[] {
    return this.active.map((p) => p.name);
  }

  /** The weight tensor of `name` on the device (for a model's forward pass). */
  weightOf(name: string): DeviceTensor {
    const w = this.weights.get(name);
    if (w === undefined) throw new BadamOptionError('parameter name', name, 'a parameter of this backend');
    return w;
  }

  /**
   * The gradient accumulator of trainable parameter `name` (fp32, or its `gradientDtype`), for a backward
   * pass to add into: allocated zeroed on the first request after an update (or activation).
   */
  gradientOf(name: string): DeviceTensor {
    return gradientBuffer(this.device, this.requireActive(name));
  }

  /** The current weights of `name` as fp32 (16-bit values widened exactly). */
  weight(name: string): Float32Array {
    return this.weightOf(name).read();
  }

  /** Overwrites a weight (e.g. from a checkpoint); values are rounded to its dtype, and its master too when active. */
  setWeight(name: string, values: Float32Array): void {
    const w = this.weightOf(name);
    if (values.length !== w.numel)
      throw new BadamOptionError(`values of ${name}`, `${values.length} values`, `${w.numel} values`);
    w.write(values);
    const active = this.active.find((p) => p.name === name);
    if (active?.master) this.device.cast(w, active.master);
  }

  /** Adds gradients (by parameter name: host arrays or device tensors) to the trainable parameters' accumulators. */
  accumulateGradients(gradients: ReadonlyMap<string, Float32Array | DeviceTensor>): void {
    for (const [name, gradient] of gradients) this.accumulateGradient(name, gradient);
  }

  /** Adds `gradient` (times `factor`) to the accumulator of trainable parameter `name`. */
  accumulateGradient(name: string, gradient: Float32Array | DeviceTensor, factor = 1): void {
    const p = this.requireActive(name);
    const numel = p.weight.numel;
    const given = gradient instanceof Float32Array ? gradient.length : gradient.numel;
    if (given !== numel)
      throw new BadamOptionError(`gradient of ${name}`, `${given} values`, `${numel} values`);
    const grad = gradientBuffer(this.device, p);
    if (gradient instanceof Float32Array) {
      // Staged through a workspace tensor: the caching allocator makes this a pool hit, not a cudaMalloc.
      const staging = this.device.tensor(gradient, [gradient.length], 'float32', 'workspace');
      try {
        this.device.accumulate(grad, staging, factor);
      } finally {
        staging.free();
      }
      return;
    }
    this.device.accumulate(grad, gradient, factor);
  }

  activateBlock(activation: BlockActivation<OptimizerDescription>): void {
    if (this.active.length > 0)
      throw new BadamStateError('CudaBlockBackend: a block is already active; deactivate it first');
    this.config = adamwConfigOf(activation.baseOptimizer);
    this.stepsInBlock = 0;
    const created: ActiveParameter[] = [];
    try {
      for (const p of activation.parameters) {
        const weight = this.weightOf(p.name);
        const master = p.dtype === 'float32' ? null : this.device.castTo(weight, 'float32', 'masters');
        created.push({
          name: p.name,
          weight,
          master,
          grad: null,
          gradientDtype: this.gradientDtypes.get(p.name) ?? 'float32',
          expAvg: this.device.zeros(weight.shape, 'float32', 'optimizerState'),
          expAvgSq: this.device.zeros(weight.shape, 'float32', 'optimizerState'),
          decay: p.weightDecay,
        });
      }
    } catch (error) {
      for (const p of created) freeActive(p);
      throw error;
    }
    this.active = created;
  }

  deactivateBlock(_activation: BlockActivation<OptimizerDescription>): void {
    for (const p of this.active) freeActive(p);
    this.active = [];
  }

  applyUpdate(update: BlockUpdate): void {
    const config = this.config;
    if (config === undefined || this.active.length === 0)
      throw new BadamStateError('CudaBlockBackend: applyUpdate without an active block');
    // Core's scale: the mean over micro-batches times the clip coefficient, applied inside the fused kernel.
    const gradScale = update.gradientScale;
    for (const p of this.active) {
      // A parameter no gradient reached since the last update still takes its step (moments, decay).
      const grad = gradientBuffer(this.device, p);
      this.device.adamw(p.master, p.weight, grad, p.expAvg, p.expAvgSq, {
        lr: update.lr,
        beta1: config.beta1,
        beta2: config.beta2,
        eps: config.eps,
        weightDecay: p.decay ? config.weightDecay : 0,
        step: update.stepInBlock,
        gradScale,
      });
      freeGradient(p);
    }
    this.stepsInBlock = update.stepInBlock;
  }

  discardGradients(): void {
    for (const p of this.active) freeGradient(p);
  }

  /**
   * The squared global norm of the gradients accumulated since the last update, over every parameter of the
   * block, before any is updated (deterministic reduction in double on the device; a parameter without a
   * buffer has a zero gradient).
   */
  gradientSumOfSquares(): number {
    return this.device.sumSquares(this.active.flatMap((p) => (p.grad ? [p.grad] : [])));
  }

  /**
   * The active block's AdamW state under the checkpoint names every backend uses (`<name>.exp_avg`,
   * `<name>.exp_avg_sq`, `<name>.step`, and `<name>.master` for 16-bit weights).
   */
  exportOptimizerTensors(): NamedArray[] {
    if (this.stepsInBlock === 0) return []; // no update yet: nothing to save
    return this.active.flatMap((p) =>
      adamStateTensors(this.infos.get(p.name)!, {
        expAvg: p.expAvg.read(),
        expAvgSq: p.expAvgSq.read(),
        step: this.stepsInBlock,
        master: p.master?.read(),
      }),
    );
  }

  /** Restores {@link exportOptimizerTensors} (from any backend) into the freshly activated block. */
  importOptimizerTensors(tensors: readonly NamedArray[], stepInBlock: number): void {
    this.stepsInBlock = stepInBlock;
    if (stepInBlock === 0) return;
    const byName = tensorsByName(tensors);
    for (const p of this.active) {
      const saved = readAdamState(byName, this.infos.get(p.name)!, {
        expectedStep: stepInBlock,
        master: p.master !== null,
      });
      p.expAvg.write(saved.expAvg);
      p.expAvgSq.write(saved.expAvgSq);
      if (saved.master !== undefined && p.master) p.master.write(saved.master);
    }
  }

  /** Every weight as fp32 values (16-bit values widened exactly), in model order. */
  readWeights(): NamedArray[] {
    return [...this.weights].map(([name, w]) => ({
      name,
      dtype: 'float32',
      shape: [...w.shape],
      data: w.read(),
    }));
  }

  /** Overwrites every weight given (rounded to its dtype) and the masters of the active ones. */
  writeWeights(weights: ReadonlyMap<string, NamedArray>): void {
    for (const [name, w] of weights) this.setWeight(name, w.data as Float32Array);
  }

  memory(): BackendMemoryReport {
    const stats = this.device.memory();
    const { weights, masters, gradients, optimizerState, activations, workspace, other } = stats.byKind;
    return {
      bytes: stats.inUse,
      peakBytes: stats.peakInUse,
      byKind: { weights, masters, gradients, optimizerState, activations, workspace, other },
      source: `${this.device.description.kind === 'cuda' ? 'cuda' : 'cpu device'} caching allocator (${stats.reserved} bytes reserved, ${stats.cached} cached)`,
    };
  }

  /** Frees every tensor of the backend, weights included. */
  dispose(): void {
    for (const p of this.active) freeActive(p);
    this.active = [];
    for (const w of this.weights.values()) w.free();
    this.weights.clear();
  }

  /** Parameter names, shapes and storage dtypes. */
  parameterInfo(name: string): NamedParameterInfo & { dtype: DType } {
    const info = this.infos.get(name);
    if (info === undefined) throw new BadamOptionError('parameter name', name, 'a parameter of this backend');
    return info;
  }

  private requireActive(name: string): ActiveParameter {
    const p = this.active.find((a) => a.name === name);
    if (p === undefined) {
      this.weightOf(name);
      throw new BadamStateError(
        `parameter ${JSON.stringify(name)} is not trainable now (trainable: ${this.trainableNames.join(', ')}); compute gradients for the active block only`,
      );
    }
    return p;
  }
}

/** p's gradient buffer, allocated zeroed (kind 'gradients') when it has none. */
function gradientBuffer(device: Device, p: ActiveParameter): DeviceTensor {
  p.grad ??= device.zeros(p.weight.shape, p.gradientDtype, 'gradients');
  return p.grad;
}

function freeGradient(p: ActiveParameter): void {
  p.grad?.free();
  p.grad = null;
}

function freeActive(p: ActiveParameter): void {
  p.master?.free();
  freeGradient(p);
  p.expAvg.free();
  p.expAvgSq.free();
}
