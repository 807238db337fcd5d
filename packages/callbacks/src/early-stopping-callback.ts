import type { TrainerCallback, TrainerContext } from '@badam/core';

/** Options of {@link EarlyStoppingCallback}. */
export interface EarlyStoppingOptions {
  /** The eval metric to watch, as logged (`eval_loss`, `eval_accuracy`...). Default `eval_loss`. */
  metric?: string;
  /** `min` for losses, `max` for accuracies. Default: `min` for metrics ending in `loss`, else `max`. */
  mode?: 'min' | 'max';
  /** Evaluations without improvement before stopping. Default 3. */
  patience?: number;
  /** Smallest change that counts as an improvement. Default 0. */
  minDelta?: number;
}

/**
 * Stops training when an eval metric has not improved for `patience` evaluations. Its best value and
 * counter are saved in checkpoints, so a resumed run keeps its patience.
 */
export class EarlyStoppingCallback implements TrainerCallback {
  readonly stateKey = 'early_stopping';
  readonly metric: string;
  readonly mode: 'min' | 'max';
  readonly patience: number;
  readonly minDelta: number;
  best: { value: number; step: number } | undefined;
  private waited = 0;

  constructor(options: EarlyStoppingOptions = {}) {
    this.metric = options.metric ?? 'eval_loss';
    this.mode = options.mode ?? (this.metric.endsWith('loss') ? 'min' : 'max');
    this.patience = options.patience ?? 3;
    this.minDelta = options.minDelta ?? 0;
    if (!Number.isSafeInteger(this.patience) || this.patience < 1) {
      throw new RangeError(`patience must be an integer >= 1, got ${options.patience}`);
    }
  }

  onEvaluate(context: TrainerContext, metrics: Readonly<Record<string, number>>): void {
    const value = metrics[this.metric];
    if (value === undefined) {
      throw new Error(
        `early stopping watches ${this.metric}, but evaluation reported only ${Object.keys(metrics).join(', ')}`,
      );
    }
    const improved =
      this.best === undefined ||
      (this.mode === 'min'
        ? value < this.best.value - this.minDelta
        : value > this.best.value + this.minDelta);
    if (improved) {
      this.best = { value, step: context.progress.step };
      this.waited = 0;
      return;
    }
    this.waited += 1;
    if (this.waited >= this.patience) {
      context.control.stop(
        `early stopping: ${this.metric} has not improved on ${this.best!.value.toFixed(4)} (step ${this.best!.step}) for ${this.waited} evaluations`,
      );
    }
  }

  saveState(): unknown {
    return { best: this.best, waited: this.waited };
  }

  loadState(state: unknown): void {
    const s = state as { best?: { value: number; step: number }; waited?: number };
    this.best = s.best;
    this.waited = s.waited ?? 0;
  }
}
