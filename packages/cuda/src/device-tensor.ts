import { BadamOptionError, numel as numelOf } from '@badam/core';
import type { AllocationKind, CudaAddon, Handle, TensorDType } from './addon.js';

/**
 * A tensor in a device's memory (GPU memory on the CUDA device, host memory on the CPU device), accounted
 * to one allocation kind. Free it with {@link DeviceTensor.free} to return its memory to the pool at once;
 * a tensor that is only dropped is freed when JavaScript's garbage collector finalizes it.
 */
export class DeviceTensor {
  /** @internal */
  constructor(
    private readonly addon: CudaAddon,
    /** @internal */ readonly handle: Handle,
    readonly dtype: TensorDType,
    readonly shape: readonly number[],
    readonly kind: AllocationKind,
    /** @internal */ readonly contextId: number,
  ) {}

  /** Number of elements. */
  get numel(): number {
    return numelOf(this.shape);
  }

  /** Bytes of device memory this tensor's values occupy. */
  get bytes(): number {
    return this.numel * (this.dtype === 'float32' || this.dtype === 'int32' ? 4 : 2);
  }

  /** Whether {@link free} was called. */
  get freed(): boolean {
    return this.isFreed;
  }

  private isFreed = false;

  /** The values as fp32 (16-bit values widened exactly; int32 converted). */
  read(): Float32Array {
    this.live();
    if (this.dtype === 'int32')
      return Float32Array.from(this.addon.tensorRead(this.handle, true) as Int32Array);
    return this.addon.tensorRead(this.handle, false) as Float32Array;
  }

  /** The stored bits: a Float32Array, a Uint16Array of bf16 / fp16 patterns, or an Int32Array. */
  readRaw(): Float32Array | Uint16Array | Int32Array {
    this.live();
    return this.addon.tensorRead(this.handle, true);
  }

  /**
   * Overwrites the values. A Float32Array is rounded to the tensor's dtype (to nearest, ties to even); a
   * Uint16Array (16-bit tensors), Int32Array (int32) or Uint8Array (any) is copied as raw bits.
   */
  write(values: Float32Array | Uint16Array | Int32Array | Uint8Array): this {
    this.live();
    if (this.dtype === 'int32' && values instanceof Float32Array) {
      throw new BadamOptionError('values', 'a Float32Array', 'an Int32Array for an int32 tensor');
    }
    this.addon.tensorWrite(this.handle, values);
    return this;
  }

  /** Sets every element to `value` (rounded to the dtype). */
  fill(value: number): this {
    this.live();
    this.addon.tensorFill(this.handle, value);
    return this;
  }

  /**
   * Fills with `mean + std * z`, z standard normal samples of stream `seed` (an integer in [0, 2^53)) from a
   * counter-based generator: element i depends on (seed, i) only, so every device and thread count gives the
   * same values. Fast at any size (drawn in C++, on the CPU engine on all threads).
   */
  fillNormal(mean: number, std: number, seed: number): this {
    this.live();
    this.addon.tensorFillNormal(this.handle, mean, std, seed);
    return this;
  }

  /**
   * A tensor of `shape` over this one's memory, starting `offset` elements after this tensor's start: no copy,
   * the same dtype and kind. It may reach past this tensor, never past the memory it was allocated with (a
   * fused weight's parts are views of one allocation). The memory goes back to the pool when every tensor
   * over it is freed.
   *
   * @example
   * ```ts
   * const qkv = device.zeros([6, 4], 'bfloat16', 'weights'); // q [4, 4], k [1, 4], v [1, 4]
   * const k = qkv.view(16, [1, 4]);
   * ```
   */
  view(offset: number, shape: readonly number[]): DeviceTensor {
    this.live();
    for (const d of shape) {
      if (!Number.isSafeInteger(d) || d < 1)
        throw new BadamOptionError('view shape', `[${shape.join(', ')}]`, 'positive integer dimensions');
    }
    if (!Number.isSafeInteger(offset) || offset < 0)
      throw new BadamOptionError('view offset', offset, 'a non-negative integer');
    const handle = this.addon.tensorView(this.handle, offset, numelOf(shape));
    return new DeviceTensor(this.addon, handle, this.dtype, [...shape], this.kind, this.contextId);
  }

  /** Returns the memory to the device's pool now (once no view of it is left). Using the tensor afterwards is an error. */
  free(): void {
    if (this.isFreed) return;
    this.addon.tensorFree(this.handle);
    this.isFreed = true;
  }

  private live(): void {
    if (this.isFreed)
      throw new BadamOptionError('tensor', 'freed', 'a live tensor (it was freed; create a new one)');
  }
}
