import type { TrainerLogLine } from './log-line-shape.js';

/** True for a line that must never be thinned away: an evaluation, or one that records block switches. */
function isLandmark(line: TrainerLogLine): boolean {
  return (
    typeof line.eval_loss === 'number' ||
    (Array.isArray(line.block_switches) && line.block_switches.length > 0) ||
    Object.keys(line).some((k) => k.startsWith('eval_') && typeof line[k] === 'number')
  );
}

/**
 * The log lines of a run that the board keeps in memory to send to a page that opens: every line while
 * there are at most `limit`, then every 2nd, 4th, ... training line (as TensorBoard keeps a sample of a
 * long scalar series), always with every evaluation line, every line with block switches, and the latest
 * line. A log of millions of lines costs a few `limit`s of lines, and the page's curves keep their shape.
 */
export class KeptLines {
  private kept: Array<{ index: number; line: TrainerLogLine; landmark: boolean }> = [];
  /** Kept lines that are landmarks (never thinned; they do not count against the limit). */
  private landmarks = 0;
  private count = 0;
  private stride = 1;
  private latest: { index: number; line: TrainerLogLine } | undefined;

  constructor(readonly limit = 20_000) {}

  /** Lines seen so far (kept or not). */
  get seen(): number {
    return this.count;
  }

  /** Every how many training lines one is kept (1 until the log outgrows the limit). */
  get every(): number {
    return this.stride;
  }

  /** Adds lines in order; true when the sample thinned (what was sent before is no longer what is kept). */
  add(lines: readonly TrainerLogLine[]): boolean {
    let thinned = false;
    for (const line of lines) {
      const index = this.count++;
      const entry = { index, line, landmark: isLandmark(line) };
      if (entry.landmark) this.landmarks++;
      if (index % this.stride === 0 || entry.landmark) this.kept.push(entry);
      this.latest = entry;
      if (this.kept.length - this.landmarks > this.limit) {
        this.stride *= 2;
        this.kept = this.kept.filter((e) => e.index % this.stride === 0 || e.landmark);
        thinned = true;
      }
    }
    return thinned;
  }

  /** The kept lines in order, ending with the latest line. */
  lines(): TrainerLogLine[] {
    const lines = this.kept.map((e) => e.line);
    if (this.latest !== undefined && this.kept.at(-1) !== this.latest) lines.push(this.latest.line);
    return lines;
  }

  /** Forgets everything (the log was replaced). */
  clear(): void {
    this.kept = [];
    this.landmarks = 0;
    this.count = 0;
    this.stride = 1;
    this.latest = undefined;
  }
}
