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
  /**
   * What runs `gemm`: `cublas <version>` on the GPU; on the CPU reference device `native sgemm <kernel>
   * x<threads>` (@badam/native's SGEMM, e.g. `native sgemm avx512 x2`) or `reference` (the plain loop, with
   * `BADAM_CPU_GEMM=reference`); on the CPU engine its micro-kernels for bf16 and fp32 operands and its
   * threads (`engine bf16 pairs (vdpbf16ps) 8x32 / fp32 fma avx512 8x32 x2`).
   */
  gemmLibrary: string;
  /** Bytes the GEMM library holds as its workspace, from the allocator (cuBLAS: 32 MiB on Hopper, else 4 MiB; 0 on the CPU). */
  gemmWorkspaceBytes: number;
}

/** The addon's raw functions (see native/bind_*.cc). */
export interface CudaAddon {
  createContext(kind: 'cuda' | 'cpu' | 'cpu-engine', ordinal: number, instructionSet: string): Handle;
  contextInfo(ctx: Handle): DeviceDescription;
  memoryStats(ctx: Handle): AllocatorStats;
  emptyCache(ctx: Handle): void;
  resetPeaks(ctx: Handle): void;
  synchronize(ctx: Handle): void;
  tensorCreate(ctx: Handle, dtype: TensorDType, numel: number, kind: AllocationKind): Handle;
  tensorView(t: Handle, offset: number, numel: number): Handle;
  tensorFree(t: Handle): void;
  tensorWrite(t: Handle, values: Float32Array | Uint16Array | Int32Array | Uint8Array): void;
  tensorRead(t: Handle, raw: boolean): Float32Array | Uint16Array | Int32Array;
  tensorFill(t: Handle, value: number): void;
  tensorFillNormal(t: Handle, mean: number, std: number, seed: number): void;
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
    lda?: number,
    ldb?: number,
    ldc?: number,
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
  embedding(table: Handle, ids: Handle, out: Handle): void;
  embeddingBackward(dOut: Handle, ids: Handle, dTable: Handle): void;
  rmsNorm(x: Handle, weight: Handle, out: Handle, rstd: Handle, eps: number): void;
  rmsNormBackward(
    dOut: Handle,
    x: Handle,
    weight: Handle,
    rstd: Handle,
    dx: Handle,
    dWeight: Handle | null,
    accumulateDx: boolean,
  ): void;
  addRmsNorm(
    x: Handle,
    delta: Handle,
    sum: Handle,
    weight: Handle,
    out: Handle,
    rstd: Handle,
    eps: number,
  ): void;
  rope(
    x: Handle,
    cos: Handle,
    sin: Handle,
    seqLen: number,
    heads: number,
    headDim: number,
    inverse: boolean,
    rowStride?: number,
  ): void;
  attention(
    q: Handle,
    k: Handle,
    v: Handle,
    out: Handle,
    lse: Handle,
    batch: number,
    seqLen: number,
    heads: number,
    kvHeads: number,
    headDim: number,
    scale: number,
    causal: boolean,
    lengths: Handle | null,
    qStride?: number,
    kvStride?: number,
  ): void;
  attentionBackward(
    q: Handle,
    k: Handle,
    v: Handle,
    out: Handle,
    dOut: Handle,
    lse: Handle,
    dq: Handle,
    dk: Handle,
    dv: Handle,
    batch: number,
    seqLen: number,
    heads: number,
    kvHeads: number,
    headDim: number,
    scale: number,
    causal: boolean,
    lengths: Handle | null,
    qStride?: number,
    kvStride?: number,
  ): void;
  swiglu(gateUp: Handle, out: Handle, intermediateSize: number): void;
  swigluBackward(gateUp: Handle, dOut: Handle, dGateUp: Handle, intermediateSize: number): void;
  add(a: Handle, b: Handle, out: Handle): void;
  addBias(x: Handle, bias: Handle): void;
  biasBackward(dOut: Handle, dBias: Handle, rowStride?: number): void;
  crossEntropy(logits: Handle, labels: Handle, losses: Handle, gradScale: number): void;
  argmaxRows(x: Handle, out: Handle): void;
  sum(x: Handle): number;
  collectivesInfo(): CollectivesInfo;
  processGroupCreate(ctx: Handle, backend: 'gloo' | 'nccl', options: NativeGroupOptions): Handle;
  pgAllGather(group: Handle, shard: Handle, full: Handle, counts: readonly number[]): Handle;
  pgReduceScatterAdd(group: Handle, full: Handle, accumulator: Handle, counts: readonly number[]): Handle;
  workWait(work: Handle): void;
  pgAllGatherHost(group: Handle, values: Float64Array): Float64Array;
  pgBroadcastHost(group: Handle, data: Uint8Array, root: number): void;
  pgBarrier(group: Handle): void;
  pgMarkProgress(group: Handle, step: number): void;
  pgDiagnose(group: Handle): string;
  pgPeerFailure(group: Handle): string;
  pgClose(group: Handle): void;
}

/** Which collective libraries this build can use here, and why not (see native/bind_collectives.cc). */
export interface CollectivesInfo {
  gloo: boolean;
  glooUnavailableReason: string;
  nccl: boolean;
  ncclUnavailableReason: string;
}

/** What the addon takes to make a process group (torchrun's variables, the timeout). */
export interface NativeGroupOptions {
  rank: number;
  worldSize: number;
  masterAddr: string;
  masterPort: number;
  timeoutMs: number;
  exitOnPeerFailure: boolean;
}

/** The package's folder: the nearest one above this module with a package.json (src/ in tests, dist/src/ when built). */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

const require = createRequire(import.meta.url);
/** node-gyp-build's resolver: build/Release/ (built from source here), then prebuilds/<platform>-<arch>/. */
const nodeGypBuild = require('node-gyp-build') as { path(dir: string): string };

/** What to do when no addon loads: the tools a build from source needs and the command that runs it. */
const BUILD_FROM_SOURCE =
  'to build it from source for this machine, install a C++ compiler (g++; Debian/Ubuntu: apt-get install g++; add the CUDA toolkit with nvcc for the GPU device), ' +
  'let the package run its install script (npm: `npm install-scripts approve @badam/cuda` where npm asks; ' +
  "pnpm: `allowBuilds: { '@badam/cuda': true }` in pnpm-workspace.yaml) and run `npm rebuild @badam/cuda` " +
  '(pnpm: `pnpm rebuild @badam/cuda`)';

let cached: { addon?: CudaAddon; path?: string; error?: string } | undefined;

/** Thrown when the addon or the CUDA device cannot be used; the message says what is missing and what to do. */
export class CudaUnavailableError extends Error {
  override readonly name = 'CudaUnavailableError';
}

function load(): { addon?: CudaAddon; path?: string; error?: string } {
  const root = packageRoot();
  let path: string;
  try {
    path = nodeGypBuild.path(root);
  } catch {
    const note = join(root, 'build', 'Release', 'unavailable.txt');
    const why = existsSync(note)
      ? `the build from source failed: ${readFileSync(note, 'utf8').trim()}`
      : 'it was not built from source';
    return {
      error: `@badam/cuda has no prebuilt addon for ${process.platform}-${process.arch} and ${why}; ${BUILD_FROM_SOURCE}`,
    };
  }
  try {
    return { addon: require(path) as CudaAddon, path };
  } catch (error) {
    return {
      error: `@badam/cuda could not load ${path} (${(error as Error).message.split('\n')[0]}); ${BUILD_FROM_SOURCE}`,
    };
  }
}

/** The loaded addon; throws {@link CudaUnavailableError} naming what is missing when it is not built. */
export function loadAddon(): CudaAddon {
  cached ??= load();
  if (cached.addon === undefined) throw new CudaUnavailableError(cached.error);
  return cached.addon;
}

/** Why the addon was built without CUDA (undefined for a CUDA build, or when it is not built at all). */
export function cudaBuildNote(): string | undefined {
  cached ??= load();
  if (cached.path === undefined) return undefined;
  // A CPU-only build leaves its reason beside the addon, in build/Release/ or in the prebuild's folder.
  const note = join(dirname(cached.path), 'cuda-unavailable.txt');
  return existsSync(note) ? readFileSync(note, 'utf8').trim() : undefined;
}
