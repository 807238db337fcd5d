import { smoothSeries } from '@badam/core';
/** One `trainer_log.jsonl` line as the board reads it (every key optional: either runner, any version). */
export interface LogLine {
  readonly current_steps?: number;
  readonly total_steps?: number;
  readonly loss?: number | null;
  readonly eval_loss?: number | null;
  readonly learning_rate?: number | null;
  readonly grad_norm?: number;
  readonly tokens_per_second?: number;
  readonly memory_bytes?: number;
  readonly memory_by_kind?: Readonly<Record<string, number>>;
  readonly active_block?: number;
  readonly block_switches?: ReadonlyArray<{ step: number; from: number; to: number }>;
  readonly [key: string]: unknown;
}

/** A stretch of steps one block trained: steps `first` to `last`, both included. */
export interface BlockSegment {
  readonly block: number;
  readonly first: number;
  readonly last: number;
}

/** A block switch: after step `step`, block `from` gave way to `to`. */
export interface BlockSwitch {
  readonly step: number;
  readonly from: number;
  readonly to: number;
}

/** LLaMA-Factory's smoothing, as the loss plot draws it (from core, so the page and the PNG agree). */
export { smoothSeries } from '@badam/core';

const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/**
 * The series of one run, built up from its log lines as they arrive: training lines (loss, learning rate,
 * gradient norm, tokens/s, memory and memory by kind, at their steps), evaluation lines, and BAdam's block
 * switches, from which {@link RunSeries.timeline} says which block trained at every step.
 */
export class RunSeries {
  readonly steps: number[] = [];
  readonly loss: number[] = [];
  readonly learningRate: Array<number | null> = [];
  readonly gradNorm: Array<number | null> = [];
  readonly tokensPerSecond: Array<number | null> = [];
  readonly memoryBytes: Array<number | null> = [];
  /** Memory by kind (weights, gradients, optimizer, ...), aligned with {@link RunSeries.steps}. */
  readonly memoryByKind = new Map<string, Array<number | null>>();
  readonly evalSteps: number[] = [];
  readonly evalLoss: number[] = [];
  readonly switches: BlockSwitch[] = [];
  /** The block active after the last line (undefined for a run that is not BAdam). */
  activeBlock: number | undefined;
  /** The first block, as soon as it is known. */
  firstBlock: number | undefined;
  lastStep = 0;
  totalSteps: number | undefined;

  /** Adds log lines in the order the run wrote them. */
  add(lines: readonly LogLine[]): void {
    for (const line of lines) this.addLine(line);
  }

  private addLine(line: LogLine): void {
    const step = line.current_steps;
    if (!isNumber(step)) return;
    this.lastStep = Math.max(this.lastStep, step);
    if (isNumber(line.total_steps)) this.totalSteps = line.total_steps;
    for (const change of line.block_switches ?? []) {
      if (this.firstBlock === undefined) this.firstBlock = change.from;
      this.switches.push({ step: change.step, from: change.from, to: change.to });
    }
    if (isNumber(line.active_block)) {
      if (this.firstBlock === undefined) this.firstBlock = line.active_block;
      this.activeBlock = line.active_block;
    }
    if (isNumber(line.eval_loss)) {
      this.evalSteps.push(step);
      this.evalLoss.push(line.eval_loss);
    }
    if (!isNumber(line.loss)) return;
    const index = this.steps.length;
    this.steps.push(step);
    this.loss.push(line.loss);
    this.learningRate.push(isNumber(line.learning_rate) ? line.learning_rate : null);
    this.gradNorm.push(isNumber(line.grad_norm) ? line.grad_norm : null);
    this.tokensPerSecond.push(isNumber(line.tokens_per_second) ? line.tokens_per_second : null);
    this.memoryBytes.push(isNumber(line.memory_bytes) ? line.memory_bytes : null);
    for (const [kind, bytes] of Object.entries(line.memory_by_kind ?? {})) {
      let column = this.memoryByKind.get(kind);
      if (column === undefined) {
        column = new Array<number | null>(index).fill(null);
        this.memoryByKind.set(kind, column);
      }
      column.push(isNumber(bytes) ? bytes : null);
    }
    for (const column of this.memoryByKind.values()) if (column.length < index + 1) column.push(null);
  }

  /** The smoothed training loss. */
  smoothedLoss(): number[] {
    return smoothSeries(this.loss);
  }

  /**
   * Which block trained which steps, from step 1 to the last logged step: the stretches between the
   * recorded switches. Empty for a run without blocks (full Adam, LoRA).
   */
  timeline(): BlockSegment[] {
    if (this.firstBlock === undefined) return [];
    const segments: BlockSegment[] = [];
    let first = 1;
    let block = this.firstBlock;
    for (const change of this.switches) {
      if (change.step >= first) segments.push({ block: change.from, first, last: change.step });
      first = change.step + 1;
      block = change.to;
    }
    if (this.lastStep >= first) segments.push({ block, first, last: this.lastStep });
    return segments;
  }

  /** The latest training line's loss, or undefined before the first. */
  latestLoss(): number | undefined {
    return this.loss.at(-1);
  }
}
