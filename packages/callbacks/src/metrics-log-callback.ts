import { appendFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type BlockSwitchRecord,
  type LogEntry,
  type TrainerCallback,
  type TrainerContext,
  trainerLogLine,
} from '@badam/core';
import { FileWriteError, writeFileAtomic } from '@badam/safetensors';

/** The name LLaMA-Factory gives its per-step log. */
export const TRAINER_LOG = 'trainer_log.jsonl';

/**
 * Writes `trainer_log.jsonl` in the output directory: one JSON object per logging step, with LLaMA-Factory's
 * keys (`current_steps`, `total_steps`, `loss`, `eval_loss`, `learning_rate`, `epoch`, `percentage`,
 * `elapsed_time`, `remaining_time`) plus BAdam's (`active_block`, `tokens_per_second`, `memory_bytes`,
 * `memory_by_kind`, `grad_norm`, eval metrics, and `block_switches`: the switches since the
 * previous line, so a reader knows the exact step of every switch whatever the logging interval). A fresh
 * run starts the file anew. The lines so far are also kept in each checkpoint (this callback's state), so a
 * resumed run writes the file again from the checkpoint's lines, whatever became of the file (deleted, or
 * holding lines of an interrupted run past the checkpoint); checkpoints from before that keep the file's
 * lines up to the checkpoint's step.
 */
export class MetricsLogCallback implements TrainerCallback {
  readonly path: string;
  readonly stateKey = 'trainer_log';
  /** Switches not yet written: they go on the next line. */
  private pendingSwitches: BlockSwitchRecord[] = [];
  /** The lines written so far (what a checkpoint keeps). */
  private lines: string[] = [];
  /** The lines a checkpoint kept, when resuming from one that has them. */
  private restored: string[] | undefined;

  constructor(options: { outputDir: string }) {
    this.path = join(options.outputDir, TRAINER_LOG);
  }

  saveState(): unknown {
    return { lines: this.lines };
  }

  loadState(state: unknown): void {
    const lines = (state as { lines?: unknown } | null)?.lines;
    if (Array.isArray(lines) && lines.every((l) => typeof l === 'string')) this.restored = lines;
  }

  async onTrainBegin(context: TrainerContext): Promise<void> {
    const step = context.progress.step;
    let kept: string[] = [];
    if (step > 0 && this.restored !== undefined) {
      kept = this.restored;
    } else if (step > 0) {
      try {
        kept = (await readFile(this.path, 'utf8'))
          .split('\n')
          .filter((line) => line.trim() !== '')
          .filter((line) => {
            try {
              return (JSON.parse(line) as { current_steps?: number }).current_steps! <= step;
            } catch {
              return false;
            }
          });
      } catch {
        kept = [];
      }
    }
    this.lines = [...kept];
    await writeFileAtomic(this.path, [kept.map((l) => `${l}\n`).join('')]);
  }

  onBlockSwitch(context: TrainerContext, change: { from: number; to: number }): void {
    this.pendingSwitches.push({ step: context.progress.step, from: change.from, to: change.to });
  }

  async onLog(context: TrainerContext, entry: LogEntry): Promise<void> {
    const line = trainerLogLine(entry, context.progress, this.pendingSwitches);
    this.pendingSwitches = [];
    const text = JSON.stringify(line);
    this.lines.push(text);
    // One write per line: appending keeps every earlier line intact if the process dies mid-run.
    await appendFile(this.path, `${text}\n`).catch((error: unknown) => {
      throw new FileWriteError(this.path, (error as NodeJS.ErrnoException).code, error);
    });
  }
}

/** Parses a trainer_log.jsonl file. */
export async function readTrainerLog(path: string): Promise<Array<Record<string, unknown>>> {
  const text = await readFile(path, 'utf8');
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l, i) => {
      try {
        return JSON.parse(l) as Record<string, unknown>;
      } catch (error) {
        throw new Error(`${path}: line ${i + 1} is not JSON (${(error as Error).message})`);
      }
    });
}
