import {
  type BlockSwitchRecord,
  type LogEntry,
  type TrainerCallback,
  type TrainerContext,
  trainerLogLine,
} from '@badam/core';
import type { LogLine } from './run-series.js';

/**
 * The in-page run's `trainer_log.jsonl`, kept in memory: the same line per logging step and evaluation
 * as @badam/callbacks' MetricsLogCallback writes to disk (both use core's `trainerLogLine`), handed to
 * `onLine` so the page charts it exactly as the board charts a run.
 */
export class PageLogCallback implements TrainerCallback {
  readonly lines: LogLine[] = [];
  private pending: BlockSwitchRecord[] = [];

  constructor(private readonly onLine: (line: LogLine) => void) {}

  onBlockSwitch(context: TrainerContext, change: { from: number; to: number }): void {
    this.pending.push({ step: context.progress.step, from: change.from, to: change.to });
  }

  onLog(context: TrainerContext, entry: LogEntry): void {
    const line: LogLine = trainerLogLine(entry, context.progress, this.pending);
    this.pending = [];
    this.lines.push(line);
    this.onLine(line);
  }
}
