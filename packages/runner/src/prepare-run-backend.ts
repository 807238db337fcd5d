import { type FineTuningMethod, UsageError } from '@badam/core';
import { prepareTfjsBackend } from '@badam/tfjs';
import type { RunBackendName } from './run-flags.js';
import type { CudaDeviceChoice, RunnerDialect } from './run-options.js';
import { flagName } from './run-options.js';

/** What getting a backend ready reads of the run's options. */
export interface PrepareBackendOptions {
  readonly tfjsBackend: Parameters<typeof prepareTfjsBackend>[0];
  readonly nativeKernels: boolean;
  readonly cudaDevice?: CudaDeviceChoice;
  /** The run's method: a backend that cannot train it yet refuses it here, before any work. */
  readonly method?: FineTuningMethod;
}

/** What the runner has of the model before it is built: its kind, and whether it has a device implementation. */
export interface PreparedModel {
  readonly kind: string;
  /** The runner builds this model on @badam/cuda's device for `--backend cuda`. */
  readonly cuda?: boolean;
}

type Dialect = Pick<RunnerDialect, 'rename' | 'describeMethods'>;

/** How a command line names methods when the runner gives no dialect. */
const PLAIN: Dialect = { describeMethods: (methods) => methods.join(' or ') };

/** Gets one backend ready and returns its label; each entry calls its backend package's own functions. */
type PrepareBackend = (
  options: PrepareBackendOptions,
  model: PreparedModel,
  warn: (message: string) => void,
  dialect: Dialect,
) => Promise<string>;

/** @badam/cuda, imported when used (a machine without its addon still runs tfjs), or why it does not load. */
async function loadCuda(): Promise<typeof import('@badam/cuda') | string> {
  try {
    return await import('@badam/cuda');
  } catch (error) {
    return (error as Error).message.split('\n')[0]!;
  }
}

/** Why `--backend cuda` cannot train `kind` yet, and what this machine has. */
function cudaNotYet(kind: string, cuda: typeof import('@badam/cuda') | string): UsageError {
  let machine: string;
  try {
    if (typeof cuda === 'string') throw new Error(cuda);
    const status = cuda.Device.cudaStatus();
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

/** The backends a run can choose, each getting itself ready. */
const PREPARE: Readonly<Record<RunBackendName, PrepareBackend>> = {
  async tfjs(options, _model, warn) {
    const label = await prepareTfjsBackend(options.tfjsBackend, {
      nativeKernels: options.nativeKernels,
      warn,
    });
    return `tfjs ${label}`;
  },
  async cuda(options, model, _warn, dialect) {
    const cuda = await loadCuda();
    if (model.cuda !== true) throw cudaNotYet(model.kind, cuda);
    if (typeof cuda === 'string')
      throw new UsageError(`--backend cuda: @badam/cuda does not load (${cuda}); train with --backend tfjs`);
    const backend = `--${flagName(dialect, 'backend')}`;
    const missing = options.method === undefined ? undefined : cuda.cudaMissingFor(options.method);
    if (missing !== undefined) {
      throw new UsageError(
        `${dialect.describeMethods([options.method!])} does not run on ${backend} cuda yet (@badam/cuda has no ${missing}): use ${dialect.describeMethods(['block', 'full'])} on cuda, or ${backend} tfjs for ${options.method}`,
      );
    }
    return cuda.cudaDeviceLabel(cuda.openDevice(options.cudaDevice ?? 0));
  },
};

/**
 * Gets the run's tensor backend ready before any work is done: for `tfjs`, the tfjs backend
 * (`--tfjs_backend`) and @badam/native's matrix multiply; for `cuda`, the device of `--cuda_device` when the
 * runner has a device implementation of the model (`model.cuda`), else a clear error; a method the backend
 * cannot train yet is refused here too, in the runner's words (`dialect`). Returns a label such as
 * `tfjs wasm + native avx512 x2` or `cuda NVIDIA H200 (cublas 12.8)`.
 */
export function prepareRunBackend(
  backend: RunBackendName,
  options: PrepareBackendOptions,
  model: PreparedModel,
  warn: (message: string) => void,
  dialect: Dialect = PLAIN,
): Promise<string> {
  return PREPARE[backend](options, model, warn, dialect);
}
