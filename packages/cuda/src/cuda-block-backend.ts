import {
  type AdamWConfig,
  type BackendMemoryReport,
  BadamOptionError,
  BadamStateError,
  type BlockActivation,
  type BlockBackend,
  type BlockUpdate,
  type DType,
  type NamedArray,
  type NamedParameterInfo,
  type ResolvedAdamWConfig,
  resolveAdamWConfig,
  validateNamedParameters,
} from '@badam/core';
import type { Device } from './device.js';
import type { DeviceTensor } from './device-tensor.js';

/** A parameter to place on the device: its name, shape, storage dtype and initial values. */
export interface CudaParameter extends NamedParameterInfo {
  /** fp32 values (rounded to `dtype`), or a tensor already on the device (taken over, not copied). */
  readonly values: Float32Array | DeviceTensor;
}

/** Options of a {@link CudaBlockBackend}. */
export interface CudaBlockBackendOptions {
  /** Clip the active block's gradients to this global L2 norm before each update. Default: no clipping. */
  clipGradNorm?: number;
}

interface ActiveParameter {
  readonly name: string;
  readonly weight: DeviceTensor;
  /** fp32 master of a 16-bit weight; null for fp32 weights (their own master). */
  readonly master: DeviceTensor | null;
  readonly grad: DeviceTensor;
  readonly expAvg: DeviceTensor;
  readonly expAvgSq: DeviceTensor;
  readonly decay: boolean;
}

/**
 * BAdam's backend on a {@link Device}: core's `BlockBackend` contract with bf16 / fp16 (or fp32) weights in
 * device memory. Activating a block allocates, for its parameters only, an fp32 master (16-bit weights),
 * an fp32 gradient accumulator and AdamW's two moments; each update is one fused kernel per parameter that
 * also writes the rounded weight; deactivation frees all of it back to the caching allocator, and
 * {@link memory} shows it.
 *
 * Gradients come from the caller — a model's backward pass — through {@link accumulateGradient} (host
 * arrays or device tensors) or by writing into {@link gradientOf}.
 *
 * @example
 * ```ts
 * const device = Device.cpu(); // Device.cuda() on a GPU
 * const backend = new CudaBlockBackend(device, parameters); // bf16 weights
 * const optimizer = new BlockOptimizer({ baseOptimizer: { weightDecay: 0 }, namedParameters: parameters,
 *   learningRate: 1e-5, switchBlockEvery: 50 }, backend);
 * for (const name of optimizer.trainableNames) backend.accumulateGradient(name, gradients.get(name));
 * optimizer.step();
 * ```
 */
export class CudaBlockBackend implements BlockBackend<AdamWConfig> {
  private readonly weights = new Map<string, DeviceTensor>();
  private readonly infos = new Map<string, NamedParameterInfo>();
  private readonly clipGradNorm: number | undefined;
  private active: ActiveParameter[] = [];
  private config: ResolvedAdamWConfig | undefined;
  private gradNorm: number | undefined;

  constructor(
    readonly device: Device,
    parameters: readonly CudaParameter[],
    options: CudaBlockBackendOptions = {},
  ) {
    validateNamedParameters(parameters, 'parameters');
    if (options.clipGradNorm !== undefined && !(options.clipGradNorm > 0)) {
      throw new BadamOptionError('clipGradNorm', options.clipGradNorm, 'a number > 0');
    }
    this.clipGradNorm = options.clipGradNorm;
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
    }
  }

  /** Names of the parameters trainable now. */
  get trainableNames(): string[] {
    return this.active.map((p) => p.name);
  }

  /** The global gradient norm of the last update (before clipping), when clipping is on. */
  get lastGradNorm(): number | undefined {
    return this.gradNorm;
  }

  /** The weight tensor of `name` on the device (for a model's forward pass). */
  weightOf(name: string): DeviceTensor {
    const w = this.weights.get(name);
    if (w === undefined) throw new BadamOptionError('parameter name', name, 'a parameter of this backend');
    return w;
  }

  /** The fp32 gradient accumulator of trainable parameter `name` (a backward pass may add into it). */
  gradientOf(name: string): DeviceTensor {
    return this.requireActive(name).grad;
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

  /** Adds `gradient` (times `factor`) to the accumulator of trainable parameter `name`. */
  accumulateGradient(name: string, gradient: Float32Array | DeviceTensor, factor = 1): void {
    const p = this.requireActive(name);
    if (gradient instanceof Float32Array) {
      if (gradient.length !== p.grad.numel)
        throw new BadamOptionError(
          `gradient of ${name}`,
          `${gradient.length} values`,
          `${p.grad.numel} values`,
        );
      // Staged through a workspace tensor: the caching allocator makes this a pool hit, not a cudaMalloc.
      const staging = this.device.tensor(gradient, [gradient.length], 'float32', 'workspace');
      try {
        this.device.accumulate(p.grad, staging, factor);
      } finally {
        staging.free();
      }
      return;
    }
    if (gradient.numel !== p.grad.numel)
      throw new BadamOptionError(`gradient of ${name}`, `${gradient.numel} values`, `${p.grad.numel} values`);
    this.device.accumulate(p.grad, gradient, factor);
  }

  activateBlock(activation: BlockActivation<AdamWConfig>): void {
    if (this.active.length > 0)
      throw new BadamStateError('CudaBlockBackend: a block is already active; deactivate it first');
    this.config = resolveAdamWConfig(activation.baseOptimizer);
    const created: ActiveParameter[] = [];
    try {
      for (const p of activation.parameters) {
        const weight = this.weightOf(p.name);
        const master = p.dtype === 'float32' ? null : this.device.castTo(weight, 'float32', 'masters');
        created.push({
          name: p.name,
          weight,
          master,
          grad: this.device.zeros(weight.shape, 'float32', 'gradients'),
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

  deactivateBlock(_activation: BlockActivation<AdamWConfig>): void {
    for (const p of this.active) freeActive(p);
    this.active = [];
  }

  applyUpdate(update: BlockUpdate): void {
    const config = this.config;
    if (config === undefined || this.active.length === 0)
      throw new BadamStateError('CudaBlockBackend: applyUpdate without an active block');
    let gradScale = update.gradientScale;
    if (this.clipGradNorm !== undefined) {
      // torch.nn.utils.clip_grad_norm_ on the scaled gradients, folded into the fused update's scale.
      const norm = this.device.globalNorm(this.active.map((p) => p.grad)) * update.gradientScale;
      this.gradNorm = norm;
      const factor = this.clipGradNorm / (norm + 1e-6);
      if (factor < 1) gradScale *= factor;
    }
    for (const p of this.active) {
      this.device.adamw(p.master, p.weight, p.grad, p.expAvg, p.expAvgSq, {
        lr: update.lr,
        beta1: config.beta1,
        beta2: config.beta2,
        eps: config.eps,
        weightDecay: p.decay ? config.weightDecay : 0,
        step: update.stepInBlock,
        gradScale,
      });
      p.grad.fill(0);
    }
  }

  discardGradients(): void {
    for (const p of this.active) p.grad.fill(0);
  }

  /**
   * The active block's AdamW state as named arrays (`<name>.exp_avg`, `<name>.exp_avg_sq`, and `<name>.master`
   * for 16-bit weights) for checkpoints — the same names as core's ReferenceBackend.
   */
  optimizerTensors(): NamedArray[] {
    const out: NamedArray[] = [];
    for (const p of this.active) {
      const shape = [...p.weight.shape];
      out.push({ name: `${p.name}.exp_avg`, dtype: 'float32', shape, data: p.expAvg.read() });
      out.push({ name: `${p.name}.exp_avg_sq`, dtype: 'float32', shape, data: p.expAvgSq.read() });
      if (p.master) out.push({ name: `${p.name}.master`, dtype: 'float32', shape, data: p.master.read() });
    }
    return out;
  }

  /** Restores {@link optimizerTensors} into the active block (activate the same block first). */
  loadOptimizerTensors(tensors: readonly NamedArray[]): void {
    const byName = new Map(tensors.map((t) => [t.name, t]));
    for (const p of this.active) {
      const m = byName.get(`${p.name}.exp_avg`);
      const v = byName.get(`${p.name}.exp_avg_sq`);
      if (m === undefined || v === undefined) {
        throw new BadamStateError(
          `optimizer state has no moments for ${JSON.stringify(p.name)}; was it saved with the same active block?`,
        );
      }
      p.expAvg.write(m.data as Float32Array);
      p.expAvgSq.write(v.data as Float32Array);
      const master = byName.get(`${p.name}.master`);
      if (master !== undefined && p.master) p.master.write(master.data as Float32Array);
    }
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

function freeActive(p: ActiveParameter): void {
  p.master?.free();
  p.grad.free();
  p.expAvg.free();
  p.expAvgSq.free();
}
