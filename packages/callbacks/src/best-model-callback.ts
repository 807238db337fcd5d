import { join } from 'node:path';
import { checkpointDirName, type TrainerCallback, type TrainerContext } from '@badam/core';

/** The best evaluation so far, as Hugging Face's trainer_state.json records it. */
export interface BestModelState {
  /** The metric's best value. */
  readonly best_metric: number;
  /** The step it was measured at. */
  readonly best_global_step: number;
  /** The checkpoint saved at that step, if one was. */
  readonly best_model_checkpoint: string | null;
}

/** Options of a {@link BestModelCallback}. */
export interface BestModelCallbackOptions {
  /** Where the run's `checkpoint-<step>` directories go. */
  readonly outputDir: string;
  /** The evaluation metric compared, as logged (`eval_loss`, `eval_accuracy`). */
  readonly metric: string;
  /** A larger value is better (false for a loss). */
  readonly greaterIsBetter: boolean;
  /** Called with the best checkpoint's directory each time it changes (e.g. to keep it through rotation). */
  readonly onBest?: (checkpoint: string) => void;
}

/** The key under which the trainer keeps this callback's state in checkpoints (and trainer_state.json reads it). */
export const BEST_MODEL_STATE_KEY = 'best_model';

/**
 * Tracks the best checkpoint by an evaluation metric, as Hugging Face's `load_best_model_at_end` with
 * `metric_for_best_model` does: after each evaluation that improves the metric, the checkpoint saved at the
 * same step becomes the best (so saves should fall on evaluation steps). Its state (best metric, step and
 * checkpoint) is saved in checkpoints, survives a resume, and fills trainer_state.json's `best_*` fields.
 *
 * @example
 * ```ts
 * const best = new BestModelCallback({ outputDir: 'out', metric: 'eval_loss', greaterIsBetter: false });
 * const trainer = new Trainer({ ..., callbacks: [best] });
 * await trainer.train();
 * console.log(best.best?.best_model_checkpoint); // out/checkpoint-40
 * ```
 */
export class BestModelCallback implements TrainerCallback {
  readonly stateKey = BEST_MODEL_STATE_KEY;
  private state: BestModelState | undefined;
  /** The step whose evaluation improved the metric, until the checkpoint of that step is saved. */
  private improvedAt: number | undefined;
  private missing = false;
  private step = 0;

  constructor(private readonly options: BestModelCallbackOptions) {}

  /** The best so far; undefined before the first evaluation. */
  get best(): BestModelState | undefined {
    return this.state;
  }

  /** True when an evaluation lacked the metric (its name is wrong for this task). */
  get metricMissing(): boolean {
    return this.missing;
  }

  onEvaluate(context: TrainerContext, metrics: Readonly<Record<string, number>>): void {
    const value = metrics[this.options.metric];
    if (value === undefined || !Number.isFinite(value)) {
      this.missing = value === undefined;
      return;
    }
    const best = this.state?.best_metric;
    const better = best === undefined || (this.options.greaterIsBetter ? value > best : value < best);
    if (!better) return;
    const step = context.progress.step;
    this.step = step;
    this.state = { best_metric: value, best_global_step: step, best_model_checkpoint: null };
    this.improvedAt = step;
  }

  /**
   * The state a checkpoint being saved records: when this step's evaluation was the best, that checkpoint
   * itself is the best one (as Hugging Face records it).
   */
  saveState(): BestModelState | undefined {
    if (this.state !== undefined && this.improvedAt !== undefined && this.improvedAt === this.step)
      return { ...this.state, best_model_checkpoint: this.checkpointOf(this.step) };
    return this.state;
  }

  onStepEnd(context: TrainerContext): void {
    this.step = context.progress.step;
  }

  onSave(_context: TrainerContext, checkpoint: { path: string; step: number }): void {
    if (this.state === undefined || this.improvedAt !== checkpoint.step) return;
    this.state = { ...this.state, best_model_checkpoint: checkpoint.path };
    this.improvedAt = undefined;
    this.options.onBest?.(checkpoint.path);
  }

  loadState(state: unknown): void {
    const s = state as Partial<BestModelState> | undefined;
    if (s === undefined || typeof s.best_metric !== 'number') return;
    this.state = {
      best_metric: s.best_metric,
      best_global_step: s.best_global_step ?? 0,
      best_model_checkpoint: s.best_model_checkpoint ?? null,
    };
    if (this.state.best_model_checkpoint !== null) this.options.onBest?.(this.state.best_model_checkpoint);
  }

  /** The checkpoint directory a step's save will have, to compare with. */
  checkpointOf(step: number): string {
    return join(this.options.outputDir, checkpointDirName(step));
  }
}
