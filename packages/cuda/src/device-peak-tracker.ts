import type { Device } from './device.js';

/** Kinds that do not change inside a forward and backward pass: what the model and BAdam hold between steps. */
const HELD_KINDS = ['weights', 'masters', 'gradients', 'optimizerState'] as const;

/**
 * The allocator's peaks by kind over a run. The allocator keeps one peak of all bytes; the tracker reads it
 * and starts it afresh around each forward and backward pass, so the bytes a pass adds on top of what is
 * held (activations and the kernels' workspace) are known at the pass's own peak. Reported as
 * `activations` (activations + workspace at the moment of the pass's peak).
 *
 * @example
 * ```ts
 * const tracker = new DevicePeakTracker(device);
 * tracker.sample(false); // before a forward and backward pass
 * model.lossAndGradients(batch, trainable, gradientOf);
 * tracker.sample(true); // after it: its activations are known
 * tracker.peaksByKind(); // { weights, masters, gradients, optimizerState, activations }
 * ```
 */
export class DevicePeakTracker {
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

  /** Most bytes in use at once since the tracker was made. */
  peakBytes(): number {
    return Math.max(this.peak, this.device.memory().peakInUse);
  }

  /** The most bytes of each kind held at once, and the passes' activations. */
  peaksByKind(): Record<string, number> {
    return { ...this.byKind };
  }
}
