import { BadamOptionError, numel } from '@badam/core';
import {
  type AdamWStepArgs,
  type AllocationKind,
  type AllocatorStats,
  type CudaAddon,
  CudaUnavailableError,
  cudaBuildNote,
  type DeviceDescription,
  type Handle,
  loadAddon,
  type SparseAdamStepArgs,
  type TensorDType,
} from './addon.js';
import { DeviceTensor } from './device-tensor.js';

/** Shapes of a matrix product C[m, n] = alpha op(A)[m, k] op(B)[k, n] + beta C (row-major). */
export interface GemmShape {
  m: number;
  n: number;
  k: number;
  /** A is stored [k, m]. */
  transA?: boolean;
  /** B is stored [n, k]. */
  transB?: boolean;
  /** Default 1. */
  alpha?: number;
  /** Default 0 (C is overwritten). */
  beta?: number;
}

/** Whether CUDA can be used here, and if not, why. */
export interface CudaStatus {
  /** The addon was built with nvcc. */
  readonly compiled: boolean;
  /** CUDA devices found (0 when none or unusable). */
  readonly devices: number;
  /** What is missing, when `devices` is 0. */
  readonly reason?: string;
}

let nextContextId = 1;

/**
 * A device with its caching allocator: the CUDA device (a GPU, kernels in CUDA, GEMMs in cuBLAS) or the CPU
 * device (host memory, the C++ reference kernels). Both run the same kernels with the same arguments, so
 * code written against one runs on the other, and the CPU device is the oracle the GPU is checked against.
 *
 * @example
 * ```ts
 * const device = Device.cpu(); // or Device.cuda()
 * const a = device.tensor(Float32Array.of(1, 2, 3, 4), [2, 2], 'bfloat16');
 * const c = device.zeros([2, 2], 'float32');
 * device.gemm(a, a, c, { m: 2, n: 2, k: 2 });
 * c.read(); // Float32Array [7, 10, 15, 22]
 * ```
 */
export class Device {
  private readonly addon: CudaAddon;
  private readonly ctx: Handle;
  private readonly id = nextContextId++;
  /** What the device is: kind, name, compute capability, memory, GEMM library. */
  readonly description: DeviceDescription;

  private constructor(kind: 'cuda' | 'cpu', ordinal: number) {
    this.addon = loadAddon();
    this.ctx = this.addon.createContext(kind, ordinal);
    this.description = this.addon.contextInfo(this.ctx);
  }

  /**
   * The GPU `ordinal`. Throws {@link CudaUnavailableError} saying what is missing — a CUDA build of the
   * addon, a driver and GPU, cuBLAS — when it cannot be used.
   */
  static cuda(ordinal = 0): Device {
    const status = Device.cudaStatus();
    if (status.devices === 0)
      throw new CudaUnavailableError(`@badam/cuda cannot use a GPU here: ${status.reason}`);
    try {
      return new Device('cuda', ordinal);
    } catch (error) {
      throw new CudaUnavailableError(`@badam/cuda cannot use GPU ${ordinal}: ${(error as Error).message}`);
    }
  }

  /** The CPU device: host memory and the reference kernels. Works wherever the addon is built. */
  static cpu(): Device {
    return new Device('cpu', 0);
  }

  /** Whether the CUDA device can be created here, and why not. */
  static cudaStatus(): CudaStatus {
    const info = loadAddon().buildInfo();
    if (!info.cudaCompiled)
      return { compiled: false, devices: 0, reason: cudaBuildNote() ?? info.cudaUnavailableReason };
    return info.cudaDevices > 0
      ? { compiled: true, devices: info.cudaDevices }
      : { compiled: true, devices: 0, reason: info.cudaUnavailableReason };
  }

  /** An uninitialised tensor of `shape` (fill it or write it before reading). */
  empty(shape: readonly number[], dtype: TensorDType, kind: AllocationKind = 'other'): DeviceTensor {
    for (const d of shape) {
      if (!Number.isSafeInteger(d) || d < 1)
        throw new BadamOptionError('shape', `[${shape.join(', ')}]`, 'positive integer dimensions');
    }
    const handle = this.addon.tensorCreate(this.ctx, dtype, numel(shape), kind);
    return new DeviceTensor(this.addon, handle, dtype, [...shape], kind, this.id);
  }

  /** A tensor of zeros. */
  zeros(shape: readonly number[], dtype: TensorDType, kind: AllocationKind = 'other'): DeviceTensor {
    return this.empty(shape, dtype, kind).fill(0);
  }

  /** A tensor holding `values` (rounded to `dtype`; or raw bits, see {@link DeviceTensor.write}). */
  tensor(
    values: Float32Array | Uint16Array | Int32Array | Uint8Array,
    shape: readonly number[],
    dtype: TensorDType,
    kind: AllocationKind = 'other',
  ): DeviceTensor {
    const t = this.empty(shape, dtype, kind);
    try {
      return t.write(values);
    } catch (error) {
      t.free();
      throw error;
    }
  }

  /** `dst` = the values of `src` (same dtype and size). */
  copy(dst: DeviceTensor, src: DeviceTensor): void {
    this.own(dst, src);
    this.addon.tensorCopy(dst.handle, src.handle);
  }

  /** A new tensor with `src`'s values converted to `dtype` (round to nearest even). */
  castTo(src: DeviceTensor, dtype: TensorDType, kind: AllocationKind = src.kind): DeviceTensor {
    const dst = this.empty(src.shape, dtype, kind);
    this.cast(src, dst);
    return dst;
  }

  /** `dst` = `src` converted to `dst`'s dtype. */
  cast(src: DeviceTensor, dst: DeviceTensor): void {
    this.own(src, dst);
    this.addon.cast(src.handle, dst.handle);
  }

  /** Matrix product with fp32 accumulation (cuBLAS on the GPU); A and B share a dtype, C is fp32 or that dtype. */
  gemm(a: DeviceTensor, b: DeviceTensor, c: DeviceTensor, shape: GemmShape): void {
    this.own(a, b, c);
    this.addon.gemm(
      a.handle,
      b.handle,
      c.handle,
      shape.m,
      shape.n,
      shape.k,
      shape.transA ?? false,
      shape.transB ?? false,
      shape.alpha ?? 1,
      shape.beta ?? 0,
    );
  }

  /**
   * One fused AdamW step (torch.optim.AdamW): updates `exp_avg`, `exp_avg_sq` and the fp32 `master`, and
   * writes the weight rounded to its dtype in the same pass. `master` is null for fp32 weights.
   */
  adamw(
    master: DeviceTensor | null,
    weight: DeviceTensor,
    grad: DeviceTensor,
    expAvg: DeviceTensor,
    expAvgSq: DeviceTensor,
    args: AdamWStepArgs,
  ): void {
    this.own(weight, grad, expAvg, expAvgSq, ...(master ? [master] : []));
    this.addon.adamw(
      master?.handle ?? null,
      weight.handle,
      grad.handle,
      expAvg.handle,
      expAvgSq.handle,
      args,
    );
  }

  /** Sum of squares of all elements of `tensors` (accumulated in double). */
  sumSquares(tensors: readonly DeviceTensor[]): number {
    this.own(...tensors);
    return this.addon.sumSquares(tensors.map((t) => t.handle));
  }

  /** The L2 norm of `tensors` taken as one vector. */
  globalNorm(tensors: readonly DeviceTensor[]): number {
    return Math.sqrt(this.sumSquares(tensors));
  }

  /** `x *= factor` in place. */
  scale(x: DeviceTensor, factor: number): void {
    this.own(x);
    this.addon.scale(x.handle, factor);
  }

  /** `dst += src * factor` (dst fp32): gradient accumulation. */
  accumulate(dst: DeviceTensor, src: DeviceTensor, factor = 1): void {
    this.own(dst, src);
    this.addon.accumulate(dst.handle, src.handle, factor);
  }

  /**
   * BlockOptimizerRatio's masked Adam update on the entries `indices` (int32) of the fp32 `param`, with
   * compact moments (one per index); `weight`, when given, receives the rounded new values.
   */
  sparseAdam(
    param: DeviceTensor,
    weight: DeviceTensor | null,
    grad: DeviceTensor,
    indices: DeviceTensor,
    expAvg: DeviceTensor,
    expAvgSq: DeviceTensor,
    args: SparseAdamStepArgs,
  ): void {
    this.own(param, grad, indices, expAvg, expAvgSq, ...(weight ? [weight] : []));
    this.addon.sparseAdam(
      param.handle,
      weight?.handle ?? null,
      grad.handle,
      indices.handle,
      expAvg.handle,
      expAvgSq.handle,
      args,
    );
  }

  /** Waits for queued work (kernels are asynchronous on the GPU). */
  synchronize(): void {
    this.addon.synchronize(this.ctx);
  }

  /** The allocator's accounting: bytes in use by kind, reserved, cached, peaks. */
  memory(): AllocatorStats {
    return this.addon.memoryStats(this.ctx);
  }

  /** Returns cached free blocks to the device. */
  emptyCache(): void {
    this.addon.emptyCache(this.ctx);
  }

  /** Starts the peak counters afresh from the current values. */
  resetPeaks(): void {
    this.addon.resetPeaks(this.ctx);
  }

  private own(...tensors: DeviceTensor[]): void {
    for (const t of tensors) {
      if (t.contextId !== this.id)
        throw new BadamOptionError(
          'tensor',
          'from another device',
          `a tensor of this ${this.description.kind} device`,
        );
    }
  }
}
