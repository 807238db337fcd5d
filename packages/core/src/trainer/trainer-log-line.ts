import { formatDuration } from '../format.js';
import type { LogEntry, TrainerProgress } from './trainer-callback.js';

/** A block switch as `trainer_log.jsonl` records it: after optimizer step `step`, block `from` gave way to `to`. */
export interface BlockSwitchRecord {
  readonly step: number;
  readonly from: number;
  readonly to: number;
}

/**
 * One line of `trainer_log.jsonl`: LLaMA-Factory's keys (`current_steps`, `total_steps`, `loss`, `eval_loss`,
 * `learning_rate`, `epoch`, `percentage`, `elapsed_time`, `remaining_time`) plus BAdam's (`active_block`,
 * `tokens_per_second`, `memory_bytes`, `memory_by_kind`, `grad_norm`, eval metrics, and `block_switches`:
 * the switches since the previous line).
 */
export type TrainerLogLine = Record<string, unknown> & {
  readonly current_steps: number;
  readonly total_steps: number;
  readonly loss: number | null;
  readonly eval_loss: number | null;
  readonly learning_rate: number | null;
  readonly epoch: number;
};

/**
 * The `trainer_log.jsonl` line of a logged entry, the one format every writer uses (the file on disk, the
 * board's in-page run). Memory by kind belongs to training lines, as memory_bytes does.
 */
export function trainerLogLine(
  entry: LogEntry,
  progress: TrainerProgress,
  blockSwitches: readonly BlockSwitchRecord[],
): TrainerLogLine {
  const { step, epoch, loss, eval_loss, learning_rate, ...rest } = entry;
  const byKind = loss !== undefined ? progress.memory.byKind : undefined;
  const remaining =
    progress.step > 0 ? (progress.elapsedMs / progress.step) * (progress.maxSteps - progress.step) : 0;
  return {
    current_steps: step,
    total_steps: progress.maxSteps,
    loss: loss ?? null,
    eval_loss: eval_loss ?? null,
    learning_rate: learning_rate ?? null,
    epoch,
    percentage: Number(((100 * step) / progress.maxSteps).toFixed(2)),
    elapsed_time: formatDuration(progress.elapsedMs),
    remaining_time: formatDuration(remaining),
    ...rest,
    ...(byKind !== undefined && Object.keys(byKind).length > 0 ? { memory_by_kind: byKind } : {}),
    ...(blockSwitches.length > 0 ? { block_switches: [...blockSwitches] } : {}),
  };
}
