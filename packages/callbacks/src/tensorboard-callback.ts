import { hostname } from 'node:os';
import { join } from 'node:path';
import type { LogEntry, TrainerCallback, TrainerContext } from '@badam/core';
import { TensorBoardEventFile } from './tensorboard-event-file.js';

/** Options of a {@link TensorBoardCallback}. */
export interface TensorBoardCallbackOptions {
  /** Where the event file goes (Hugging Face's `logging_dir`). */
  readonly logDir: string;
}

/**
 * Hugging Face's default `logging_dir`: `<outputDir>/runs/<Mon>DD_HH-MM-SS_<host>` (the date of `now`).
 */
export function defaultLoggingDir(outputDir: string, now = new Date()): string {
  const month = now.toLocaleString('en-US', { month: 'short' });
  const two = (n: number) => String(n).padStart(2, '0');
  const stamp = `${month}${two(now.getDate())}_${two(now.getHours())}-${two(now.getMinutes())}-${two(now.getSeconds())}`;
  return join(outputDir, 'runs', `${stamp}_${hostname()}`);
}

/** The scalars of one log entry under TensorBoard tags, as Hugging Face's TensorBoardCallback names them. */
export function tensorBoardScalars(entry: LogEntry, context?: TrainerContext): Array<[string, number]> {
  const out: Array<[string, number]> = [];
  for (const [key, value] of Object.entries(entry)) {
    if (key === 'step' || typeof value !== 'number') continue;
    out.push([key.startsWith('eval_') ? `eval/${key.slice(5)}` : `train/${key}`, value]);
  }
  // The allocator's bytes by kind (cuda: weights, masters, gradients, optimizer state...), beside the total.
  if (entry.loss !== undefined) {
    for (const [kind, bytes] of Object.entries(context?.progress.memory.byKind ?? {}))
      if (typeof bytes === 'number') out.push([`train/memory_${kind}_bytes`, bytes]);
  }
  return out;
}

/**
 * Writes every logged entry to a TensorBoard event file (`report_to tensorboard`): `train/loss`,
 * `train/learning_rate`, `train/grad_norm`, `train/tokens_per_second`, `train/memory_bytes`,
 * `train/active_block`, `train/epoch` at each logging step, and `eval/loss` (and other eval metrics) at
 * each evaluation. badam-board stays the live view; this is for the tools that read TensorBoard's files.
 *
 * @example
 * ```ts
 * const trainer = new Trainer({ ..., callbacks: [new TensorBoardCallback({ logDir: 'out/runs/first' })] });
 * ```
 */
export class TensorBoardCallback implements TrainerCallback {
  private file: TensorBoardEventFile | undefined;

  constructor(private readonly options: TensorBoardCallbackOptions) {}

  /** The event file's path, once training began. */
  get path(): string | undefined {
    return this.file?.path;
  }

  async onTrainBegin(): Promise<void> {
    this.file ??= await TensorBoardEventFile.create(this.options.logDir);
  }

  async onLog(context: TrainerContext, entry: LogEntry): Promise<void> {
    this.file ??= await TensorBoardEventFile.create(this.options.logDir);
    await this.file.addScalars(entry.step, tensorBoardScalars(entry, context));
  }
}
