import type { LossVerdict, TrainerCallback, TrainerContext } from '@badam/core';

/**
 * The NaN/Inf loss guard: a micro-batch whose loss is not finite is skipped (its step's gradients are
 * dropped, with a warning), and training stops after `maxConsecutive` such micro-batches in a row.
 */
export class NonFiniteLossGuard implements TrainerCallback {
  readonly maxConsecutive: number;
  private readonly warn: (message: string) => void;
  private consecutive = 0;
  /** Micro-batches skipped so far in this process. */
  skipped = 0;

  constructor(options: { maxConsecutive?: number; warn?: (message: string) => void } = {}) {
    this.maxConsecutive = options.maxConsecutive ?? 5;
    if (!Number.isSafeInteger(this.maxConsecutive) || this.maxConsecutive < 1) {
      throw new RangeError(`maxConsecutive must be an integer >= 1, got ${options.maxConsecutive}`);
    }
    this.warn = options.warn ?? ((m) => console.warn(m));
  }

  onMicroBatchLoss(context: TrainerContext, loss: number): LossVerdict {
    if (Number.isFinite(loss)) {
      this.consecutive = 0;
      return 'keep';
    }
    this.consecutive += 1;
    this.skipped += 1;
    if (this.consecutive >= this.maxConsecutive) {
      this.warn(
        `BAdam: loss ${loss} for ${this.consecutive} micro-batches in a row at step ${context.progress.step}: stopping`,
      );
      return 'stop';
    }
    this.warn(
      `BAdam: loss ${loss} at step ${context.progress.step}: skipping this step's gradients (${this.consecutive}/${this.maxConsecutive} in a row)`,
    );
    return 'skip';
  }
}
