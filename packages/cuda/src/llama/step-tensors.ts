import type { AllocationKind, TensorDType } from '../addon.js';
import type { Device } from '../device.js';
import type { DeviceTensor } from '../device-tensor.js';

/**
 * Every tensor one step allocates, by name for reusable scratch ('workspace') and in a list for the rest,
 * so that the step frees all of it before it returns, also when it throws.
 */
export class StepTensors {
  private readonly scratch = new Map<string, DeviceTensor>();
  private readonly owned = new Set<DeviceTensor>();

  constructor(private readonly device: Device) {}

  /** A fresh tensor of `kind` owned by the step (free it early with {@link release}). */
  alloc(shape: readonly number[], dtype: TensorDType, kind: AllocationKind): DeviceTensor {
    const t = this.device.empty(shape, dtype, kind);
    this.owned.add(t);
    return t;
  }

  /** The step's scratch buffer `name` (kind 'workspace'), allocated on first use and reused after. */
  scratchOf(name: string, shape: readonly number[], dtype: TensorDType): DeviceTensor {
    let t = this.scratch.get(name);
    if (t !== undefined && (t.dtype !== dtype || t.shape.join() !== shape.join())) {
      t.free();
      t = undefined;
    }
    if (t === undefined) {
      t = this.device.empty(shape, dtype, 'workspace');
      this.scratch.set(name, t);
    }
    return t;
  }

  /** Frees every scratch buffer now (the next {@link scratchOf} allocates afresh). */
  releaseScratch(): void {
    for (const t of this.scratch.values()) t.free();
    this.scratch.clear();
  }

  release(...tensors: DeviceTensor[]): void {
    for (const t of tensors) {
      if (this.owned.delete(t)) t.free();
    }
  }

  freeAll(): void {
    for (const t of this.owned) t.free();
    for (const t of this.scratch.values()) t.free();
    this.owned.clear();
    this.scratch.clear();
  }
}
