import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** An opaque handle owned by the addon. */
export type Handle = { readonly __handle: unique symbol };

/** Element types of device tensors. */
export type TensorDType = 'float32' | 'bfloat16' | 'float16' | 'int32';

/** The accounting categories of the caching allocator (core's MemoryKind). */
export type AllocationKind =
  | 'weights'
  | 'masters'
  | 'gradients'
  | 'optimizerState'
  | 'activations'
  | 'workspace'
  | 'other';

/** AdamW scalars of one fused step. */
export interface AdamWStepArgs {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** 0 for parameters without decay (biases, norms). */
  weightDecay: number;
  /** 1-based step since the block's activation. */
  step: number;
  /** Multiplies the gradient first: 1 / accumulation steps, times the clipping factor. */
  gradScale: number;
}

/** Scalars of the masked sparse-Adam update. */
export interface SparseAdamStepArgs {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  step: number;
}

/** The allocator's accounting, in bytes. */
export interface AllocatorStats {
  /** Bytes held by live tensors, by kind (exact: what was asked for). */
  byKind: Record<AllocationKind, number>;
  inUse: number;
  peakInUse: number;
  /** Bytes obtained from the device: live blocks (rounded up) plus the cache. */
  reserved: number;
  peakReserved: number;
  /** Bytes of freed blocks kept for reuse. */
  cached: number;
  /** Calls to the device's allocator (cudaMalloc) so far. */
  deviceAllocations: number;
  liveBlocks: number;
}

/** What the device is. */
export interface DeviceDescription {
  kind: 'cuda' | 'cpu';
  name: string;
  computeCapability: string;
  totalMemory: number;
  multiprocessors: number;
  gemmLibrary: string;
}

/** The addon's raw functions (see native/addon.cc). */
export interface CudaAddon {
  createContext(kind: 'cuda' | 'cpu', ordinal: number): Handle;
  contextInfo(ctx: Handle): DeviceDescription;
  memoryStats(ctx: Handle): AllocatorStats;
  emptyCache(ctx: Handle): void;
  resetPeaks(ctx: Handle): void;
  synchronize(ctx: Handle): void;
  tensorCreate(ctx: Handle, dtype: TensorDType, numel: number, kind: AllocationKind): Handle;
  tensorFree(t: Handle): void;
  tensorWrite(t: Handle, values: Float32Array | Uint16Array | Int32Array | Uint8Array): void;
  tensorRead(t: Handle, raw: boolean): Float32Array | Uint16Array | Int32Array;
  tensorFill(t: Handle, value: number): void;
  tensorCopy(dst: Handle, src: Handle): void;
  gemm(
    a: Handle,
    b: Handle,
    c: Handle,
    m: number,
    n: number,
    k: number,
    transA: boolean,
    transB: boolean,
    alpha: number,
    beta: number,
  ): void;
  adamw(master: Handle | null, weight: Handle, grad: Handle, m: Handle, v: Handle, args: AdamWStepArgs): void;
  sumSquares(tensors: Handle[]): number;
  scale(t: Handle, factor: number): void;
  accumulate(dst: Handle, src: Handle, factor: number): void;
  cast(src: Handle, dst: Handle): void;
  sparseAdam(
    param: Handle,
    weight: Handle | null,
    grad: Handle,
    indices: Handle,
    m: Handle,
    v: Handle,
    args: SparseAdamStepArgs,
  ): void;
  buildInfo(): { cudaCompiled: boolean; cudaDevices: number; cudaUnavailableReason: string };
}

/** The package's folder: the nearest one above this module with a package.json (src/ in tests, dist/src/ when built). */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

const build = (file: string) => join(packageRoot(), 'build', file);

let cached: { addon?: CudaAddon; error?: string } | undefined;

/** Thrown when the addon or the CUDA device cannot be used; the message says what is missing and what to do. */
export class CudaUnavailableError extends Error {
  override readonly name = 'CudaUnavailableError';
}

/** The loaded addon; throws {@link CudaUnavailableError} naming what is missing when it is not built. */
export function loadAddon(): CudaAddon {
  if (cached === undefined) {
    const path = build('badam_cuda.node');
    if (!existsSync(path)) {
      const reason = existsSync(build('unavailable.txt'))
        ? readFileSync(build('unavailable.txt'), 'utf8').trim()
        : 'the package was not built';
      cached = {
        error: `@badam/cuda's addon is not built (${reason}); install g++ (and the CUDA toolkit for GPUs) and run: pnpm --filter @badam/cuda build`,
      };
    } else {
      try {
        cached = { addon: createRequire(import.meta.url)(path) as CudaAddon };
      } catch (error) {
        cached = {
          error: `@badam/cuda's addon could not be loaded from ${path}: ${(error as Error).message}`,
        };
      }
    }
  }
  if (cached.addon === undefined) throw new CudaUnavailableError(cached.error);
  return cached.addon;
}

/** Why the addon was built without CUDA (undefined for a CUDA build, or when it is not built at all). */
export function cudaBuildNote(): string | undefined {
  const note = build('cuda-unavailable.txt');
  return existsSync(note) ? readFileSync(note, 'utf8').trim() : undefined;
}
