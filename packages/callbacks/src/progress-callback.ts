import type { BackendMemoryReport, MemoryKind, TrainerCallback, TrainerContext } from '@badam/core';
import cliProgress from 'cli-progress';
import { formatDuration, formatLr, formatMemory } from './format.js';

/** Options of {@link ProgressCallback}. */
export interface ProgressCallbackOptions {
  /** Where to write. Default `process.stdout`. */
  stream?: NodeJS.WriteStream;
  /**
   * Plain-line mode: print every this many optimizer steps, with the mean loss of those steps (with
   * `every` = the trainer's `loggingSteps`, the number trainer_log.jsonl has). Default 10.
   */
  every?: number;
  /** Force the mode instead of detecting a TTY. */
  mode?: 'bar' | 'lines';
}

/** Short names of the memory kinds in the progress line. */
const KIND_LABELS: Readonly<Record<MemoryKind, string>> = {
  weights: 'w',
  masters: 'master',
  gradients: 'grad',
  optimizerState: 'adam',
  activations: 'act',
  workspace: 'ws',
  other: 'other',
};

/**
 * The memory the backend holds: the total, and where the backend tells them apart, its peak and the bytes by
 * kind (`w` weights, `master` fp32 masters, `grad` gradients, `adam` optimizer state, `act` activations,
 * `ws` workspace; kinds holding nothing are left out), e.g. `1.23 GB (peak 1.50 GB; w 1.00 GB, grad 50.0 MB)`;
 * over several processes every rank's bytes too (`; ranks 1.23 GB / 1.21 GB`).
 */
export function formatMemoryReport(report: BackendMemoryReport): string {
  const kinds = Object.entries(report.byKind ?? {})
    .filter(([, bytes]) => (bytes ?? 0) > 0)
    .map(([kind, bytes]) => `${KIND_LABELS[kind as MemoryKind] ?? kind} ${formatMemory(bytes!)}`);
  const peak = report.peakBytes !== undefined ? [`peak ${formatMemory(report.peakBytes)}`] : [];
  // Over several processes: every rank's bytes now (this line's other numbers are this process's).
  const ranks =
    report.ranks !== undefined && report.ranks.length > 1
      ? [`ranks ${report.ranks.map((r) => formatMemory(r.bytes)).join(' / ')}`]
      : [];
  if (kinds.length === 0 && peak.length === 0 && ranks.length === 0) return formatMemory(report.bytes);
  const details = [...peak, ...(kinds.length > 0 ? [kinds.join(', ')] : []), ...ranks].join('; ');
  return `${formatMemory(report.bytes)} (${details})`;
}

function fields(context: TrainerContext, loss = context.progress.loss) {
  const p = context.progress;
  return {
    loss: Number.isFinite(loss) ? loss.toFixed(4) : '-',
    lr: formatLr(p.lr),
    tps: p.tokensPerSecond.toFixed(0),
    block: p.activeBlock === undefined ? '-' : String(p.activeBlock),
    mem: formatMemoryReport(p.memory),
    epoch: p.epoch.toFixed(2),
  };
}

/**
 * Shows training progress: a live bar (cli-progress) when the stream is a terminal, and plain periodic
 * lines otherwise (CI logs, pipes), each with step, epoch, loss, learning rate, tokens/s, BAdam's active
 * block and the memory the backend holds (with its peak and the bytes by kind, see {@link formatMemoryReport}).
 *
 * @example
 * ```text
 * step 40/200 (20%) | epoch 0.40 | loss 1.8231 | lr 1.00e-5 | 812 tok/s | block 3 | mem 45.2 MB (peak 51.0 MB; w 40.0 MB, grad 1.7 MB, adam 3.5 MB) | 0:00:31 < 0:02:04
 * ```
 */
export class ProgressCallback implements TrainerCallback {
  private readonly stream: NodeJS.WriteStream;
  private readonly every: number;
  private readonly mode: 'bar' | 'lines';
  private bar: cliProgress.SingleBar | undefined;
  /** Losses of the steps since the last printed line: the line shows their mean, as the trainer's log does. */
  private windowSum = 0;
  private windowSteps = 0;

  constructor(options: ProgressCallbackOptions = {}) {
    this.stream = options.stream ?? process.stdout;
    this.every = options.every ?? 10;
    this.mode = options.mode ?? (this.stream.isTTY ? 'bar' : 'lines');
  }

  onTrainBegin(context: TrainerContext): void {
    const p = context.progress;
    this.stream.write(`${context.description}\ntraining ${p.maxSteps} steps (from step ${p.step})\n`);
    if (this.mode === 'bar') {
      this.bar = new cliProgress.SingleBar(
        {
          stream: this.stream,
          format:
            'step {value}/{total} |{bar}| {percentage}% | epoch {epoch} | loss {loss} | lr {lr} | {tps} tok/s | block {block} | mem {mem} | {duration_formatted} < {eta_formatted}',
          hideCursor: true,
          etaBuffer: 20,
        },
        cliProgress.Presets.shades_classic,
      );
      this.bar.start(p.maxSteps, p.step, fields(context));
    }
  }

  onStepEnd(context: TrainerContext): void {
    const p = context.progress;
    if (this.bar !== undefined) {
      this.bar.update(p.step, fields(context));
      return;
    }
    if (Number.isFinite(p.loss)) {
      this.windowSum += p.loss;
      this.windowSteps += 1;
    }
    if (p.step % this.every === 0 || p.step === p.maxSteps) {
      const mean = this.windowSteps > 0 ? this.windowSum / this.windowSteps : p.loss;
      this.stream.write(`${this.line(context, mean)}\n`);
      this.windowSum = 0;
      this.windowSteps = 0;
    }
  }

  onEvaluate(_context: TrainerContext, metrics: Readonly<Record<string, number>>): void {
    const text = Object.entries(metrics)
      .map(([k, v]) => `${k} ${v.toFixed(4)}`)
      .join(' | ');
    if (this.bar !== undefined) this.bar.stop();
    this.stream.write(`eval: ${text}\n`);
    if (this.bar !== undefined) this.bar.start(this.bar.getTotal(), _context.progress.step, fields(_context));
  }

  onTrainEnd(context: TrainerContext): void {
    this.bar?.update(context.progress.step, fields(context));
    this.bar?.stop();
    this.bar = undefined;
    const reason = context.control.stopReason;
    this.stream.write(
      `training ${reason ? `stopped (${reason})` : 'done'} at step ${context.progress.step} in ${formatDuration(context.progress.elapsedMs)}\n`,
    );
  }

  /** The plain progress line for the current state (with `loss`: that loss instead of the last step's). */
  line(context: TrainerContext, loss?: number): string {
    const p = context.progress;
    const f = fields(context, loss);
    const percent = p.maxSteps > 0 ? Math.round((100 * p.step) / p.maxSteps) : 0;
    const remaining = p.step > 0 ? (p.elapsedMs / p.step) * (p.maxSteps - p.step) : Number.NaN;
    return (
      `step ${p.step}/${p.maxSteps} (${percent}%) | epoch ${f.epoch} | loss ${f.loss} | lr ${f.lr} | ${f.tps} tok/s | ` +
      `block ${f.block} | mem ${f.mem} | ${formatDuration(p.elapsedMs)} < ${formatDuration(remaining)}`
    );
  }
}
