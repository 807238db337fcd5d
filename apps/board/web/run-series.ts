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
  readonly elapsed_time?: string;
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

/** The loss smoothing of training_loss.png (from core, so the page and the PNG agree). */
export { smoothingWeight, smoothSeries } from '@badam/core';

const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/** Evaluation keys that are not scores (timings, counts): not charted. */
const EVAL_BOOKKEEPING = /^eval_(loss|runtime|samples_per_second|steps_per_second|samples|steps)$/;

/**
 * Seconds in LLaMA-Factory's `elapsed_time` ("0:01:05", "1 day, 2:03:04"), or undefined for anything else.
 */
export function parseElapsed(text: unknown): number | undefined {
  if (typeof text !== 'string') return undefined;
  const match = /^(?:(\d+) days?, )?(\d+):(\d{2}):(\d{2}(?:\.\d+)?)$/.exec(text.trim());
  if (match === null) return undefined;
  return Number(match[1] ?? 0) * 86_400 + Number(match[2]) * 3600 + Number(match[3]) * 60 + Number(match[4]);
}

/** True for a switch record as the writers write it. */
const isSwitch = (s: unknown): s is BlockSwitch =>
  typeof s === 'object' &&
  s !== null &&
  isNumber((s as BlockSwitch).step) &&
  isNumber((s as BlockSwitch).from) &&
  isNumber((s as BlockSwitch).to);

/**
 * The series of one run, built up from its log lines as they arrive: training lines (loss, learning rate,
 * gradient norm, tokens/s, memory and memory by kind, at their steps and elapsed times), evaluation lines
 * (eval loss and every other eval score, such as eval_accuracy), and BAdam's block switches, from which
 * {@link RunSeries.timeline} says which block trained at every step. A line that is not an object with a
 * numeric `current_steps` is counted in {@link RunSeries.skipped} and changes nothing; a key of the wrong
 * kind is read as absent.
 */
export class RunSeries {
  readonly steps: number[] = [];
  /** Seconds since the run started at each training line (`elapsed_time`), or null where not logged. */
  readonly elapsed: Array<number | null> = [];
  readonly loss: number[] = [];
  readonly learningRate: Array<number | null> = [];
  readonly gradNorm: Array<number | null> = [];
  readonly tokensPerSecond: Array<number | null> = [];
  readonly memoryBytes: Array<number | null> = [];
  /** Memory by kind (weights, gradients, optimizer, ...), aligned with {@link RunSeries.steps}. */
  readonly memoryByKind = new Map<string, Array<number | null>>();
  readonly evalSteps: number[] = [];
  readonly evalElapsed: Array<number | null> = [];
  readonly evalLoss: number[] = [];
  /** Other evaluation scores by key (`eval_accuracy`, ...): the steps and values of each. */
  readonly evalScores = new Map<
    string,
    { steps: number[]; elapsed: Array<number | null>; values: number[] }
  >();
  readonly switches: BlockSwitch[] = [];
  /** The block active after the last line (undefined for a run that is not BAdam). */
  activeBlock: number | undefined;
  /** The first block, as soon as it is known. */
  firstBlock: number | undefined;
  lastStep = 0;
  totalSteps: number | undefined;
  /** Lines that were not log lines (the server skips them first; this guards the in-page run and old servers). */
  skipped = 0;
  /** Every (step, seconds) pair known, to place steps on a wall-time axis. */
  private readonly clock: Array<[number, number]> = [];

  /** Adds log lines in the order the run wrote them. */
  add(lines: readonly LogLine[]): void {
    for (const line of lines) {
      if (typeof line !== 'object' || line === null || Array.isArray(line) || !isNumber(line.current_steps)) {
        this.skipped++;
        continue;
      }
      this.addLine(line);
    }
  }

  private addLine(line: LogLine): void {
    const step = line.current_steps as number;
    this.lastStep = Math.max(this.lastStep, step);
    if (isNumber(line.total_steps)) this.totalSteps = line.total_steps;
    const seconds = parseElapsed(line.elapsed_time) ?? null;
    if (seconds !== null) this.clock.push([step, seconds]);
    for (const change of Array.isArray(line.block_switches) ? line.block_switches : []) {
      if (!isSwitch(change)) continue;
      if (this.firstBlock === undefined) this.firstBlock = change.from;
      this.switches.push({ step: change.step, from: change.from, to: change.to });
    }
    if (isNumber(line.active_block)) {
      if (this.firstBlock === undefined) this.firstBlock = line.active_block;
      this.activeBlock = line.active_block;
    }
    if (isNumber(line.eval_loss)) {
      this.evalSteps.push(step);
      this.evalElapsed.push(seconds);
      this.evalLoss.push(line.eval_loss);
    }
    for (const [key, value] of Object.entries(line)) {
      if (!key.startsWith('eval_') || EVAL_BOOKKEEPING.test(key) || !isNumber(value)) continue;
      let score = this.evalScores.get(key);
      if (score === undefined) {
        score = { steps: [], elapsed: [], values: [] };
        this.evalScores.set(key, score);
      }
      score.steps.push(step);
      score.elapsed.push(seconds);
      score.values.push(value);
    }
    if (!isNumber(line.loss)) return;
    const index = this.steps.length;
    this.steps.push(step);
    this.elapsed.push(seconds);
    this.loss.push(line.loss);
    this.learningRate.push(isNumber(line.learning_rate) ? line.learning_rate : null);
    this.gradNorm.push(isNumber(line.grad_norm) ? line.grad_norm : null);
    this.tokensPerSecond.push(isNumber(line.tokens_per_second) ? line.tokens_per_second : null);
    this.memoryBytes.push(isNumber(line.memory_bytes) ? line.memory_bytes : null);
    const byKind =
      typeof line.memory_by_kind === 'object' && line.memory_by_kind !== null ? line.memory_by_kind : {};
    for (const [kind, bytes] of Object.entries(byKind)) {
      let column = this.memoryByKind.get(kind);
      if (column === undefined) {
        column = new Array<number | null>(index).fill(null);
        this.memoryByKind.set(kind, column);
      }
      column.push(isNumber(bytes) ? bytes : null);
    }
    for (const column of this.memoryByKind.values()) if (column.length < index + 1) column.push(null);
  }

  /** The smoothed training loss; `weight` as the page's slider sets it (default: LLaMA-Factory's). */
  smoothedLoss(weight?: number): number[] {
    return smoothSeries(this.loss, weight);
  }

  /**
   * Seconds since the start at `step`: interpolated between the logged (step, elapsed_time) pairs, so
   * block switches and timeline stretches find their place on a wall-time axis. Undefined without any.
   */
  secondsAt(step: number): number | undefined {
    const clock = this.clock;
    if (clock.length === 0) return undefined;
    if (step <= clock[0]![0]) return clock[0]![0] === 0 ? clock[0]![1] : (clock[0]![1] * step) / clock[0]![0];
    for (let i = 1; i < clock.length; i++) {
      const [s1, t1] = clock[i]!;
      if (step <= s1) {
        const [s0, t0] = clock[i - 1]!;
        return s1 === s0 ? t1 : t0 + ((t1 - t0) * (step - s0)) / (s1 - s0);
      }
    }
    return clock.at(-1)![1];
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
