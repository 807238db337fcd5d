import {
  type BackendMemoryReport,
  BlockTrainer,
  type BlockTrainerTask,
  BlockOptimizer as CoreBlockOptimizer,
  type LogFn,
  type NamedParameterInfo,
  type TrainerBackend,
  UsageError,
} from '@badam/core';
import type { CudaBlockBackend, CudaParameter, Device, DeviceTensor } from '@badam/cuda';
import {
  BlockOptimizer,
  BlockOptimizerRatio,
  type NamedVariable,
  nonFiniteTensors,
  type PeakMemoryTracker,
  parameterInfoOf,
  prepareTfjsBackend,
  TfjsTrainerBackend,
  type TfjsTrainingTask,
  trackPeakMemory,
} from '@badam/tfjs';
import type { ModelPartition, OptimizerPlan } from './fine-tuning-methods.js';
import type { RunBackendName } from './run-flags.js';
import type { CudaDeviceChoice } from './run-options.js';

/**
 * A runner's model on @badam/cuda's {@link Device}: its parameters (the device tensors it computes with, which
 * the {@link CudaBlockBackend} takes over and updates in place) and its loss and gradients.
 */
export interface RunnerCudaModel<TBatch> {
  /** The device the model lives on (from {@link runDevice}). */
  readonly device: Device;
  /**
   * Every parameter in the model's order, by Hugging Face name; `values` are the model's own device tensors
   * (it owns and frees them; the backend updates them in place).
   */
  parameters(): readonly (CudaParameter & { readonly values: DeviceTensor })[];
  /**
   * The model's loss and gradients of a micro-batch. `gradientOf(name)` is the backend's fp32 accumulator of a
   * trainable parameter: a model adds its gradients there and returns an empty map (or returns them).
   */
  task(gradientOf: (name: string) => DeviceTensor): BlockTrainerTask<TBatch, Float32Array | DeviceTensor>;
}

/** A runner's model as the kit sees it: what it is, how BAdam may split it, and its backend implementations. */
export interface RunnerModel<TBatch> {
  /** What the model is, for messages (`Llama`, `RoBERTa`). */
  readonly kind: string;
  /** Which non-layer parameters BAdam's partition includes, and what trains in every block. */
  readonly partition: ModelPartition;
  /** Adds LoRA adapters with the run's settings (LoRA runs only). */
  addLora(): void;
  /**
   * The model on TensorFlow.js: its variables (adapters included once added) and the loss of a micro-batch.
   * Absent for a model built on the device only (`--backend cuda`: an 8B model does not fit in host fp32).
   */
  readonly tfjs?: {
    namedParameters(): readonly NamedVariable[];
    readonly task: TfjsTrainingTask<TBatch>;
  };
  /** The model on @badam/cuda's Device (`--backend cuda`); absent where the runner has no device model yet. */
  readonly cuda?: RunnerCudaModel<TBatch>;
}

/** The names, shapes and storage dtypes of the model's parameters on the run's backend. */
export function runnerParameters(backend: RunBackendName, model: RunnerModel<unknown>): NamedParameterInfo[] {
  if (backend === 'cuda' && model.cuda !== undefined) {
    return model.cuda.parameters().map((p) => ({ name: p.name, shape: [...p.shape], dtype: p.dtype }));
  }
  return parameterInfoOf(tfjsOf(model).namedParameters());
}

function tfjsOf<TBatch>(model: RunnerModel<TBatch>): NonNullable<RunnerModel<TBatch>['tfjs']> {
  if (model.tfjs === undefined)
    throw new UsageError(
      `this ${model.kind} was built for --backend cuda only: it has no TensorFlow.js model`,
    );
  return model.tfjs;
}

/** A trainer backend made for a run, with the measurements the run reports. */
export interface RunBackend<TBatch> {
  readonly trainer: TrainerBackend<TBatch>;
  /** Most bytes the tensor library held at once since the backend was made. */
  peakMemoryBytes(): number;
  /**
   * The most bytes of each kind held at once (weights, masters, gradients, optimizerState, activations,
   * workspace, other), where the backend's allocator tells them apart (cuda); undefined otherwise.
   */
  peakMemoryByKind?(): Readonly<Record<string, number>>;
  /** Names of the model's weights that hold NaN or infinity now (a diverged model must not be saved). */
  nonFiniteWeights(): string[];
  /** Frees the optimizer's state and stops the measurements. The model's weights stay. */
  dispose(): void;
}

/** Why `--backend cuda` cannot train `kind` yet, and what this machine has. */
async function cudaNotYet(kind: string): Promise<UsageError> {
  let machine: string;
  try {
    const { Device } = await import('@badam/cuda');
    const status = Device.cudaStatus();
    machine =
      status.devices > 0 ? `${status.devices} CUDA device(s) found` : `no GPU to use (${status.reason})`;
  } catch (error) {
    machine = `@badam/cuda does not load (${(error as Error).message.split('\n')[0]})`;
  }
  return new UsageError(
    `--backend cuda is not available yet for ${kind}: @badam/cuda keeps BAdam's bf16 weights, fp32 masters, gradients and Adam state on the GPU (CudaBlockBackend), ` +
      `but it has no ${kind} forward and backward pass to compute the loss and gradients with, which the GPU Llama work adds. ` +
      `This machine: ${machine}. Train with --backend tfjs.`,
  );
}

const devices = new Map<CudaDeviceChoice, Device>();

/**
 * The @badam/cuda device of `--cuda_device`: the GPU of that ordinal, or the CPU reference device (`cpu`). One
 * per process and choice (a GPU context is the process's), made on first use. A GPU that cannot be used is a
 * {@link UsageError} that says why (no CUDA build, no driver, no GPU) and what runs instead.
 */
export async function runDevice(choice: CudaDeviceChoice): Promise<Device> {
  const made = devices.get(choice);
  if (made !== undefined) return made;
  let cuda: typeof import('@badam/cuda');
  try {
    cuda = await import('@badam/cuda');
  } catch (error) {
    throw new UsageError(
      `--backend cuda: @badam/cuda does not load (${(error as Error).message.split('\n')[0]}); train with --backend tfjs`,
    );
  }
  let device: Device;
  try {
    device = choice === 'cpu' ? cuda.Device.cpu() : cuda.Device.cuda(choice);
  } catch (error) {
    if (!(error instanceof cuda.CudaUnavailableError)) throw error;
    throw new UsageError(
      `--backend cuda: ${error.message}. Use --cuda_device cpu for @badam/cuda's CPU reference device (the same kernels in C++; slow, for small models), or --backend tfjs`,
    );
  }
  devices.set(choice, device);
  return device;
}

/** What a run says it trains on: `cuda NVIDIA H200 (cublas 12.8)` or `cuda cpu reference`. */
export function cudaDeviceLabel(device: Device): string {
  const d = device.description;
  return d.kind === 'cpu' ? 'cuda cpu reference' : `cuda ${d.name} (${d.gemmLibrary})`;
}

/**
 * Gets the tensor backend ready before any work is done: for `tfjs`, the tfjs backend (`--tfjs_backend`)
 * and @badam/native's matrix multiply; for `cuda`, the device of `--cuda_device` when the model has a
 * device implementation (`model.cuda`), else a clear error. Returns a label such as
 * `tfjs wasm + native avx512 x2` or `cuda NVIDIA H200 (cublas 12.8)`.
 */
export async function prepareRunBackend(
  backend: RunBackendName,
  options: {
    tfjsBackend: Parameters<typeof prepareTfjsBackend>[0];
    nativeKernels: boolean;
    cudaDevice?: CudaDeviceChoice;
  },
  model: { readonly kind: string; readonly cuda?: boolean },
  warn: (message: string) => void,
): Promise<string> {
  if (backend === 'cuda') {
    if (model.cuda !== true) throw await cudaNotYet(model.kind);
    return cudaDeviceLabel(await runDevice(options.cudaDevice ?? 0));
  }
  const label = await prepareTfjsBackend(options.tfjsBackend, { nativeKernels: options.nativeKernels, warn });
  return `tfjs ${label}`;
}

/**
 * The trainer backend of a run: the plan's optimizer (BlockOptimizer or BlockOptimizerRatio) on the chosen
 * tensor backend, with the model's task. Training code does not change with the backend: this is the one
 * place that looks at it.
 */
export async function createTrainerBackend<TBatch>(
  backend: RunBackendName,
  plan: OptimizerPlan,
  model: RunnerModel<TBatch>,
  describe: { method: string; backendLabel: string; blockwise: boolean },
): Promise<RunBackend<TBatch>> {
  if (backend === 'cuda') {
    if (model.cuda === undefined) throw await cudaNotYet(model.kind);
    return createCudaTrainerBackend(plan, model.cuda, describe);
  }
  const tfjs = tfjsOf(model);
  const namedParameters = tfjs.namedParameters();
  const { task } = tfjs;
  let optimizer: BlockOptimizer | BlockOptimizerRatio;
  let trainer: TfjsTrainerBackend<TBatch>;
  if (plan.kind === 'block') {
    const blocks = new BlockOptimizer({ ...plan.options, namedParameters });
    optimizer = blocks;
    // BAdam describes its blocks itself; full Adam and LoRA are one block that never switches.
    const description = describe.blockwise
      ? undefined
      : `${describe.method} on ${describe.backendLabel}: AdamW over ${blocks.engine.trainableNames.length} trainable tensors`;
    trainer = new TfjsTrainerBackend({ task, optimizer, ...(description ? { description } : {}) });
  } else {
    const { learningRate, verbose, logFn, ...masks } = plan.options;
    optimizer = new BlockOptimizerRatio({
      namedParameters,
      learningRate,
      verbose,
      logFn: logFn as LogFn,
      ...masks,
    });
    trainer = new TfjsTrainerBackend({
      task,
      optimizer,
      namedParameters,
      gradientAccumulationSteps: plan.gradientAccumulationSteps,
      ...(plan.clipGradNorm !== undefined ? { clipGradNorm: plan.clipGradNorm } : {}),
    });
  }
  let peak: PeakMemoryTracker | undefined = trackPeakMemory();
  let peakBytes = 0;
  return {
    trainer,
    peakMemoryBytes: () => peak?.peakBytes() ?? peakBytes,
    nonFiniteWeights: () => nonFiniteTensors(namedParameters),
    dispose() {
      if (peak === undefined) return;
      peakBytes = peak.peakBytes();
      peak.stop();
      peak = undefined;
      optimizer.dispose();
    },
  };
}

/** Kinds that do not change inside a forward and backward pass: what the model and BAdam hold between steps. */
const HELD_KINDS = ['weights', 'masters', 'gradients', 'optimizerState'] as const;

/**
 * The allocator's peaks by kind over a run. The allocator keeps one peak of all bytes; the tracker reads it
 * and starts it afresh around each forward and backward pass, so the bytes a pass adds on top of what is
 * held (activations and the kernels' workspace) are known at the pass's own peak. Reported as
 * `activations` (activations + workspace at the moment of the pass's peak).
 */
class DevicePeakTracker {
  private peak = 0;
  private readonly byKind: Record<string, number> = {};

  constructor(private readonly device: Device) {
    device.resetPeaks();
  }

  /** Folds in the peak since the last call (everything held then counted by kind), and restarts it. */
  sample(afterPass: boolean): void {
    const stats = this.device.memory();
    this.peak = Math.max(this.peak, stats.peakInUse);
    let held = 0;
    for (const kind of HELD_KINDS) {
      const bytes = stats.byKind[kind];
      held += bytes;
      this.byKind[kind] = Math.max(this.byKind[kind] ?? 0, bytes);
    }
    if (afterPass) {
      this.byKind.activations = Math.max(this.byKind.activations ?? 0, stats.peakInUse - held);
    }
    this.device.resetPeaks();
  }

  peakBytes(): number {
    return Math.max(this.peak, this.device.memory().peakInUse);
  }

  peaksByKind(): Record<string, number> {
    return { ...this.byKind };
  }
}

/** BlockTrainer whose memory report carries the run's peak (the tracker restarts the allocator's counter). */
class CudaRunTrainer<TBatch> extends BlockTrainer<TBatch, unknown, Float32Array | DeviceTensor> {
  constructor(
    optimizer: ConstructorParameters<typeof BlockTrainer<TBatch, unknown, Float32Array | DeviceTensor>>[0],
    task: BlockTrainerTask<TBatch, Float32Array | DeviceTensor>,
    description: string,
    private readonly tracker: DevicePeakTracker,
  ) {
    super(optimizer, task, { description });
  }

  override memory(): BackendMemoryReport {
    return { ...super.memory(), peakBytes: this.tracker.peakBytes() };
  }
}

/**
 * `--backend cuda`: core's BlockOptimizer over a {@link CudaBlockBackend} on the model's device, driven by
 * core's {@link BlockTrainer} (the same trainer, state and checkpoint names as every block backend).
 */
async function createCudaTrainerBackend<TBatch>(
  plan: OptimizerPlan,
  model: RunnerCudaModel<TBatch>,
  describe: { method: string; backendLabel: string; blockwise: boolean },
): Promise<RunBackend<TBatch>> {
  if (plan.kind !== 'block') {
    throw new UsageError(
      `BAdam's ratio variant (sparse) does not run on --backend cuda yet: train block or full on cuda, or sparse on --backend tfjs`,
    );
  }
  const { CudaBlockBackend } = await import('@badam/cuda');
  const { device } = model;
  const parameters = model.parameters();
  const blocks = new CudaBlockBackend(device, parameters);
  const tracker = new DevicePeakTracker(device);
  const optimizer = new CoreBlockOptimizer({ ...plan.options, namedParameters: parameters }, blocks);
  const task = model.task((name) => blocks.gradientOf(name));
  const measured: BlockTrainerTask<TBatch, Float32Array | DeviceTensor> = {
    async lossAndGradients(batch, trainable) {
      tracker.sample(false);
      const result = await task.lossAndGradients(batch, trainable);
      tracker.sample(true);
      return result;
    },
    evaluate: (batch) => task.evaluate(batch),
  };
  const description = describe.blockwise
    ? `BAdam on ${describe.backendLabel}: ${optimizer.summary}, base AdamW`
    : `${describe.method} on ${describe.backendLabel}: AdamW over ${optimizer.trainableNames.length} trainable tensors`;
  const trainer = new CudaRunTrainer<TBatch>(optimizer, measured, description, tracker);
  let disposed = false;
  let peakBytes = 0;
  return {
    trainer,
    peakMemoryBytes: () => (disposed ? peakBytes : tracker.peakBytes()),
    peakMemoryByKind: () => tracker.peaksByKind(),
    nonFiniteWeights: () =>
      // A sum of squares in double is NaN or infinite exactly when an element is (bf16's largest squared is 1e77).
      parameters.filter((p) => !Number.isFinite(device.sumSquares([p.values]))).map((p) => p.name),
    dispose() {
      if (disposed) return;
      tracker.sample(false);
      peakBytes = tracker.peakBytes();
      disposed = true;
      // The active block's masters, gradients and Adam state; the weights are the model's.
      optimizer.dispose();
    },
  };
}
