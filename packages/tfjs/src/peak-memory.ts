import * as tf from '@tensorflow/tfjs-core';

/** A running maximum of `tf.memory().numBytes`, see {@link trackPeakMemory}. */
export interface PeakMemoryTracker {
  /** Most bytes tfjs held at once since tracking started or the last reset. */
  peakBytes(): number;
  /** Starts a new maximum from the current value. */
  reset(): void;
  /** Stops tracking (numBytes becomes a plain field again). */
  stop(): void;
}

/**
 * Tracks the true peak of tfjs's memory: every change of the engine's byte counter is observed, so the peak
 * inside a backward pass (activations and gradients alive at once) is seen without `tf.profile`'s per-kernel
 * timing overhead. One tracker at a time per engine.
 *
 * @example
 * ```ts
 * const peak = trackPeakMemory();
 * optimizer.minimize(loss);
 * console.log(peak.peakBytes());
 * ```
 */
export function trackPeakMemory(): PeakMemoryTracker {
  const state = (tf.engine() as unknown as { state: Record<string, unknown> }).state;
  const existing = Object.getOwnPropertyDescriptor(state, 'numBytes');
  if (existing?.get !== undefined)
    throw new Error('trackPeakMemory: a tracker is already active; stop() it first');
  let value = state.numBytes as number;
  let peak = value;
  Object.defineProperty(state, 'numBytes', {
    configurable: true,
    enumerable: true,
    get: () => value,
    set: (next: number) => {
      value = next;
      if (next > peak) peak = next;
    },
  });
  return {
    peakBytes: () => peak,
    reset: () => {
      peak = value;
    },
    stop: () => {
      Object.defineProperty(state, 'numBytes', {
        configurable: true,
        enumerable: true,
        writable: true,
        value,
      });
    },
  };
}
