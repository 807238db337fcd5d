import type { AllocationKind, TensorDType } from '../addon.js';
import type { Device } from '../device.js';
import type { DeviceTensor } from '../device-tensor.js';

/**
 * Every tensor one step allocates, so that the step frees all of it before it returns, also when it throws.
 * {@link alloc} makes a tensor the step owns until {@link release}; {@link scope} runs a part of the step
 * (one layer's forward or backward, one loss chunk) whose tensors are freed when it returns, so the step's
 * memory is the sum of what its phases hold, in the order packages/core's Llama step memory model follows.
 * Views (fused weights' spans, column blocks of a fused projection) are freed with the step too.
 */
export class StepTensors {
  private readonly owned = new Set<DeviceTensor>();
  private scopes: DeviceTensor[][] = [];

  constructor(private readonly device: Device) {}

  /** A fresh tensor of `kind` owned by the innermost open scope, or by the step (free it early with {@link release}). */
  alloc(shape: readonly number[], dtype: TensorDType, kind: AllocationKind): DeviceTensor {
    return this.adopt(this.device.empty(shape, dtype, kind));
  }

  /** A view of `t` (see DeviceTensor.view), freed like an allocation of the step. */
  view(t: DeviceTensor, offset: number, shape: readonly number[]): DeviceTensor {
    return this.adopt(t.view(offset, shape));
  }

  /** Runs `part`; the tensors it allocates (not those it hands back through {@link keep}) are freed after it. */
  scope<T>(part: () => T): T {
    const tensors: DeviceTensor[] = [];
    this.scopes.push(tensors);
    try {
      return part();
    } finally {
      this.scopes.pop();
      for (const t of tensors) this.release(t);
    }
  }

  /** Moves `tensor` out of the open scope to the step (it outlives the scope: a kept activation). */
  keep(tensor: DeviceTensor): DeviceTensor {
    const scope = this.scopes[this.scopes.length - 1];
    const at = scope?.indexOf(tensor) ?? -1;
    if (scope !== undefined && at >= 0) scope.splice(at, 1);
    return tensor;
  }

  /** Frees tensors of the step now (those it does not own are left alone). */
  release(...tensors: DeviceTensor[]): void {
    for (const t of tensors) {
      if (this.owned.delete(t)) t.free();
    }
  }

  freeAll(): void {
    for (const t of this.owned) t.free();
    this.owned.clear();
    this.scopes = [];
  }

  private adopt(t: DeviceTensor): DeviceTensor {
    this.owned.add(t);
    this.scopes[this.scopes.length - 1]?.push(t);
    return t;
  }
}
