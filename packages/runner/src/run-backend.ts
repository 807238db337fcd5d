import type { LogFn, TrainerBackend } from '@badam/core';
import { UsageError } from '@badam/core';
import {
  BlockOptimizer,
  BlockOptimizerRatio,
  type NamedVariable,
  type PeakMemoryTracker,
  prepareTfjsBackend,
  TfjsTrainerBackend,
  type TfjsTrainingTask,
  trackPeakMemory,
} from '@badam/tfjs';
import type { ModelPartition, OptimizerPlan } from './fine-tuning-methods.js';
import type { RunBackendName } from './run-flags.js';

/** A runner's model as the kit sees it: what it is, how BAdam may split it, and its backend implementations. */
export interface RunnerModel<TBatch> {
  /** What the model is, for messages (`Llama`, `RoBERTa`). */
  readonly kind: string;
  /** Which non-layer parameters BAdam's partition includes, and what trains in every block. */
  readonly partition: ModelPartition;
  /** Adds LoRA adapters with the run's settings (LoRA runs only). */
  addLora(): void;
  /** The model on TensorFlow.js: its variables (adapters included once added) and the loss of a micro-batch. */
  readonly tfjs: {
    namedParameters(): readonly NamedVariable[];
    readonly task: TfjsTrainingTask<TBatch>;
  };
}

/** A trainer backend made for a run, with the measurements the run reports. */
export interface RunBackend<TBatch> {
  readonly trainer: TrainerBackend<TBatch>;
  /** Most bytes the tensor library held at once since the backend was made. */
  peakMemoryBytes(): number;
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

/**
 * Gets the tensor backend ready before any work is done: for `tfjs`, the tfjs backend (`--tfjs_backend`)
 * and @badam/native's matrix multiply; for `cuda`, a clear error until a model runs there. Returns a
 * label such as `tfjs wasm + native avx512 x2`.
 */
export async function prepareRunBackend(
  backend: RunBackendName,
  options: { tfjsBackend: Parameters<typeof prepareTfjsBackend>[0]; nativeKernels: boolean },
  model: { readonly kind: string },
  warn: (message: string) => void,
): Promise<string> {
  if (backend === 'cuda') throw await cudaNotYet(model.kind);
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
  if (backend === 'cuda') throw await cudaNotYet(model.kind);
  const namedParameters = model.tfjs.namedParameters();
  const { task } = model.tfjs;
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
    dispose() {
      if (peak === undefined) return;
      peakBytes = peak.peakBytes();
      peak.stop();
      peak = undefined;
      optimizer.dispose();
    },
  };
}
