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
  /** The runner builds this model on @badam/cuda's devices (a GPU, the CPU engine) for `--backend cuda|cpu`. */
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

/** Why `--backend cuda|cpu` cannot train `kind` yet, and what this machine has. */
function deviceNotYet(
  backend: 'cuda' | 'cpu',
  kind: string,
  cuda: typeof import('@badam/cuda') | string,
): UsageError {
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
    `--backend ${backend} is not available yet for ${kind}: @badam/cuda keeps BAdam's bf16 weights, fp32 masters, gradients and Adam state on its devices (CudaBlockBackend), ` +
      `but it has no ${kind} forward and backward pass to compute the loss and gradients with. ` +
      `This machine: ${machine}. Train with --backend tfjs.`,
  );
}

/** @badam/cuda ready for `backend`, refusing a model without a device implementation or a method it lacks. */
async function deviceBackend(
  backend: 'cuda' | 'cpu',
  options: PrepareBackendOptions,
  model: PreparedModel,
  dialect: Dialect,
): Promise<typeof import('@badam/cuda')> {
  const cuda = await loadCuda();
  if (model.cuda !== true) throw deviceNotYet(backend, model.kind, cuda);
  if (typeof cuda === 'string')
    throw new UsageError(
      `--backend ${backend}: @badam/cuda does not load (${cuda}); train with --backend tfjs`,
    );
  const flag = `--${flagName(dialect, 'backend')}`;
  const missing = options.method === undefined ? undefined : cuda.cudaMissingFor(options.method);
  if (missing !== undefined) {
    throw new UsageError(
      `${dialect.describeMethods([options.method!])} does not run on ${flag} ${backend} yet (@badam/cuda has no ${missing}): use ${dialect.describeMethods(['block', 'full'])} on ${backend}, or ${flag} tfjs for ${options.method}`,
    );
  }
  return cuda;
}

/** The backends a run can choose, each getting itself ready. */
const PREPARE: Readonly<Record<Exclude<RunBackendName, 'auto'>, PrepareBackend>> = {
  async tfjs(options, _model, warn) {
    const label = await prepareTfjsBackend(options.tfjsBackend, {
      nativeKernels: options.nativeKernels,
      warn,
    });
    return `tfjs ${label}`;
  },
  async cuda(options, model, _warn, dialect) {
    const cuda = await deviceBackend('cuda', options, model, dialect);
    return cuda.cudaDeviceLabel(cuda.openDevice(options.cudaDevice ?? 0));
  },
  async cpu(options, model, _warn, dialect) {
    const cuda = await deviceBackend('cpu', options, model, dialect);
    return cuda.cudaDeviceLabel(cuda.openDevice('cpu-engine'));
  },
};

/** The backend `auto` picks for a run, and why. */
export interface AutoBackendChoice {
  readonly backend: Exclude<RunBackendName, 'auto'>;
  readonly reason: string;
}

/**
 * What `--backend auto` trains on: a GPU when @badam/cuda finds one, else @badam/cuda's CPU engine — both
 * only for a model with a device implementation (`model.cuda`) and a method they train — else tfjs.
 * `tfjsOnly`: why this run needs tfjs whatever the machine has (e.g. generation), or undefined.
 *
 * @example
 * ```ts
 * const { backend, reason } = await chooseAutoBackend({ kind: 'Llama', cuda: true }, 'block');
 * // { backend: 'cpu', reason: 'no GPU (...): the CPU engine' } on a machine without a GPU
 * ```
 */
export async function chooseAutoBackend(
  model: PreparedModel,
  method: FineTuningMethod | undefined,
  tfjsOnly?: string,
): Promise<AutoBackendChoice> {
  if (tfjsOnly !== undefined) return { backend: 'tfjs', reason: tfjsOnly };
  if (model.cuda !== true)
    return { backend: 'tfjs', reason: `${model.kind} trains on tfjs only (no device implementation yet)` };
  const cuda = await loadCuda();
  if (typeof cuda === 'string') return { backend: 'tfjs', reason: `@badam/cuda does not load (${cuda})` };
  const missing = method === undefined ? undefined : cuda.cudaMissingFor(method);
  if (missing !== undefined)
    return { backend: 'tfjs', reason: `${method} runs on tfjs only (@badam/cuda has no ${missing} yet)` };
  let status: ReturnType<typeof cuda.Device.cudaStatus>;
  try {
    status = cuda.Device.cudaStatus();
  } catch (error) {
    return {
      backend: 'tfjs',
      reason: `@badam/cuda does not load (${(error as Error).message.split('\n')[0]})`,
    };
  }
  if (status.devices > 0) return { backend: 'cuda', reason: `${status.devices} CUDA device(s) found` };
  return { backend: 'cpu', reason: `no GPU (${status.reason}): the CPU engine` };
}

/**
 * Settles `--backend auto` on the run's options before anything reads them ({@link chooseAutoBackend}): sets
 * `backend` (and the CPU engine's device) and returns the line that says what was picked and why; returns
 * undefined and changes nothing when the backend was named.
 */
export async function resolveAutoBackend(
  options: { backend: RunBackendName; cudaDevice: CudaDeviceChoice; method: FineTuningMethod },
  model: PreparedModel,
  tfjsOnly?: string,
): Promise<string | undefined> {
  if (options.backend !== 'auto') return undefined;
  const { backend, reason } = await chooseAutoBackend(model, options.method, tfjsOnly);
  options.backend = backend;
  if (backend === 'cpu') options.cudaDevice = 'cpu-engine';
  return `--backend auto picked ${backend}: ${reason}`;
}

/**
 * Gets the run's tensor backend ready before any work is done: for `tfjs`, the tfjs backend
 * (`--tfjs_backend`) and @badam/native's matrix multiply; for `cuda`, the device of `--cuda_device`, and for
 * `cpu` the CPU engine, when the runner has a device implementation of the model (`model.cuda`), else a
 * clear error; a method the backend cannot train yet is refused here too, in the runner's words (`dialect`);
 * `auto` is settled first ({@link chooseAutoBackend}; call {@link resolveAutoBackend} before to know which).
 * Returns a label such as `tfjs wasm + native avx512 x2`, `cuda NVIDIA H200 (cublas 12.8)` or
 * `cpu engine avx512-bf16 x2`.
 */
export async function prepareRunBackend(
  backend: RunBackendName,
  options: PrepareBackendOptions,
  model: PreparedModel,
  warn: (message: string) => void,
  dialect: Dialect = PLAIN,
): Promise<string> {
  const chosen = backend === 'auto' ? (await chooseAutoBackend(model, options.method)).backend : backend;
  return PREPARE[chosen](options, model, warn, dialect);
}
