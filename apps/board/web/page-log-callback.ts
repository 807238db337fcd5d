import type { LogEntry, TrainerCallback, TrainerContext } from '@badam/core';
import type { BlockSwitch, LogLine } from './run-series.js';

/**
 * The in-page run's `trainer_log.jsonl`, kept in memory: the same line per logging step and evaluation
 * as @badam/callbacks' MetricsLogCallback writes to disk (LLaMA-Factory's keys, BAdam's memory by kind
 * and block switches), handed to `onLine` so the page charts it exactly as the board charts a run.
 */
export class PageLogCallback implements TrainerCallback {
  readonly lines: LogLine[] = [];
  private pending: BlockSwitch[] = [];

  constructor(private readonly onLine: (line: LogLine) => void) {}

  onBlockSwitch(context: TrainerContext, change: { from: number; to: number }): void {
    this.pending.push({ step: context.progress.step, from: change.from, to: change.to });
  }

  onLog(context: TrainerContext, entry: LogEntry): void {
    const p = context.progress;
    const { step, epoch, loss, eval_loss, learning_rate, ...rest } = entry;
    const byKind = loss !== undefined ? p.memory.byKind : undefined;
    const line: LogLine = {
      current_steps: step,
      total_steps: p.maxSteps,
      loss: loss ?? null,
      eval_loss: eval_loss ?? null,
      learning_rate: learning_rate ?? null,
      epoch,
      ...rest,
      ...(byKind !== undefined && Object.keys(byKind).length > 0 ? { memory_by_kind: byKind } : {}),
      ...(this.pending.length > 0 ? { block_switches: this.pending } : {}),
    };
    this.pending = [];
    this.lines.push(line);
    this.onLine(line);
  }
}
