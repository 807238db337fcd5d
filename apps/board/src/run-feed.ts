import { join } from 'node:path';
import { type BoardRun, TRAINER_LOG_FILE } from './board-runs.js';
import { DirectoryWatch } from './directory-watch.js';
import { KeptLines } from './kept-lines.js';
import { logLineProblem, type TrainerLogLine } from './log-line-shape.js';
import { LogTail } from './log-tail.js';
import { type OutputImage, readOutputFiles } from './output-files.js';
import { IMAGE_FILE, RESULTS_FILE } from './served-files.js';

export type { TrainerLogLine } from './log-line-shape.js';

/** What a {@link RunFeed} tells its subscribers. */
export type RunFeedEvent =
  | { readonly type: 'lines'; readonly run: number; readonly lines: readonly TrainerLogLine[] }
  | { readonly type: 'reset'; readonly run: number }
  | { readonly type: 'results'; readonly run: number; readonly results: Readonly<Record<string, unknown>> }
  | { readonly type: 'images'; readonly run: number; readonly images: readonly OutputImage[] }
  | { readonly type: 'note'; readonly run: number; readonly message: string };

/** Options of a {@link RunFeed}. */
export interface RunFeedOptions {
  /** Where problems go besides the page (the server's log). Default stderr. */
  readonly warn?: (message: string) => void;
  /** Log lines kept for pages that open later (see {@link KeptLines}). Default 20 000. */
  readonly keptLines?: number;
  /** More new lines than this at once are sent as a fresh sample instead. Default 5000. */
  readonly burstLines?: number;
  /** The safety timer of the log and the outputs, in ms. Default 1000. */
  readonly safetyIntervalMs?: number;
}

/** Notes kept per run (the page lists them); later ones are counted. */
const MAX_NOTES = 20;

/**
 * One run's live data, shared by every page that watches it: its log lines (followed with a
 * {@link LogTail}, so only new bytes are read, and sampled by {@link KeptLines}, so a huge log costs little),
 * its results files and images, read again when the directory says one changed (or on the safety timer),
 * and notes about what could not be read (a line that is not a log line, a permission denied). A line
 * that is not a log line is skipped, never the lines after it. A new subscriber first gets everything
 * known, then the changes.
 */
export class RunFeed {
  private readonly kept: KeptLines;
  /** Lines sent since the last read caught up: past `burstLines`, the rest of the burst goes as a sample. */
  private sentInRead = 0;
  private resend = false;
  private lineNumber = 0;
  private results: Record<string, unknown> = {};
  private images: OutputImage[] = [];
  private notes: string[] = [];
  private moreNotes = 0;
  private readonly listeners = new Set<(event: RunFeedEvent) => void>();
  private readonly tail: LogTail;
  private readonly directory: DirectoryWatch;
  private outputsTimer: NodeJS.Timeout | undefined;
  private scheduled: NodeJS.Timeout | undefined;
  private readonly warn: (message: string) => void;
  private readonly burstLines: number;
  private readonly safetyIntervalMs: number;

  constructor(
    readonly run: BoardRun,
    options: RunFeedOptions | ((message: string) => void) = {},
  ) {
    const given = typeof options === 'function' ? { warn: options } : options;
    this.warn = given.warn ?? ((m) => console.error(m));
    this.kept = new KeptLines(given.keptLines ?? 20_000);
    this.burstLines = given.burstLines ?? 5000;
    this.safetyIntervalMs = given.safetyIntervalMs ?? 1000;
    const log = join(run.dir, TRAINER_LOG_FILE);
    this.tail = new LogTail(
      log,
      {
        lines: (raw) => this.take(raw),
        reset: () => {
          this.kept.clear();
          this.sentInRead = 0;
          this.resend = false;
          this.lineNumber = 0;
          this.results = {};
          this.notes = [];
          this.moreNotes = 0;
          this.emit({ type: 'reset', run: run.id });
          this.scheduleOutputs();
        },
        problem: (message) => this.note(message),
        caughtUp: () => this.flush(),
      },
      { safetyIntervalMs: this.safetyIntervalMs },
    );
    this.directory = new DirectoryWatch(run.dir, (name) => {
      if (name === null || RESULTS_FILE.test(name) || IMAGE_FILE.test(name)) this.scheduleOutputs();
    });
  }

  /** Reads what the run has written so far and starts following it. */
  async start(): Promise<void> {
    await this.tail.start();
    await this.readOutputs();
    await this.directory.check();
    // Outputs are few and written once, at the end: a slow look covers a file system without notifications.
    this.outputsTimer = setInterval(() => {
      void this.directory.check();
      this.scheduleOutputs();
    }, 2 * this.safetyIntervalMs);
    this.outputsTimer.unref();
  }

  private take(raw: readonly string[]): void {
    const parsed: TrainerLogLine[] = [];
    for (const text of raw) {
      this.lineNumber++;
      let line: unknown;
      try {
        line = JSON.parse(text);
      } catch {
        this.note(`${TRAINER_LOG_FILE} line ${this.lineNumber} is not JSON: skipped`);
        continue;
      }
      const problem = logLineProblem(line);
      if (problem !== undefined) {
        this.note(`${TRAINER_LOG_FILE} line ${this.lineNumber}: ${problem}; skipped`);
        continue;
      }
      parsed.push(line as TrainerLogLine);
    }
    this.kept.add(parsed);
    if (this.resend || parsed.length === 0) return;
    this.sentInRead += parsed.length;
    // A page open while a log grows by a burst (hundreds of MB copied in) gets the sample, not every line.
    if (this.sentInRead > this.burstLines) this.resend = true;
    else this.emit({ type: 'lines', run: this.run.id, lines: parsed });
  }

  /** After a read: if it was a burst, every page gets the kept sample afresh. */
  private flush(): void {
    this.sentInRead = 0;
    if (!this.resend) return;
    this.resend = false;
    for (const listener of this.listeners) this.replay(listener);
  }

  private note(message: string): void {
    if (this.notes.length >= MAX_NOTES) {
      // A log of a million bad lines says so now and then, not a million times.
      this.moreNotes++;
      if (this.moreNotes % 1000 !== 1) return;
      message = `${this.moreNotes} more notes since the first ${MAX_NOTES} (lines skipped or files unread)`;
    } else this.notes.push(message);
    this.warn(`badam-board: ${this.run.dir}: ${message}`);
    this.emit({ type: 'note', run: this.run.id, message });
  }

  private scheduleOutputs(): void {
    // A burst of change events (an atomic write renames a temporary file) needs one read shortly after.
    if (this.scheduled) clearTimeout(this.scheduled);
    this.scheduled = setTimeout(() => void this.readOutputs(), 50);
  }

  private async readOutputs(): Promise<void> {
    const { files, images, problems } = await readOutputFiles(this.run.dir, (n) => RESULTS_FILE.test(n));
    for (const problem of problems) if (!this.notes.includes(problem)) this.note(problem);
    if (JSON.stringify(files) !== JSON.stringify(this.results)) {
      this.results = files;
      this.emit({ type: 'results', run: this.run.id, results: files });
    }
    if (JSON.stringify(images) !== JSON.stringify(this.images)) {
      this.images = images;
      this.emit({ type: 'images', run: this.run.id, images });
    }
  }

  private replay(listener: (event: RunFeedEvent) => void): void {
    const run = this.run.id;
    listener({ type: 'reset', run });
    const lines = this.kept.lines();
    if (lines.length > 0) listener({ type: 'lines', run, lines });
    if (Object.keys(this.results).length > 0) listener({ type: 'results', run, results: this.results });
    if (this.images.length > 0) listener({ type: 'images', run, images: this.images });
    for (const message of this.notes) listener({ type: 'note', run, message });
  }

  /** Calls `listener` with everything known now, then with every change; returns the unsubscribe. */
  subscribe(listener: (event: RunFeedEvent) => void): () => void {
    this.replay(listener);
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(event: RunFeedEvent): void {
    for (const listener of this.listeners) listener(event);
  }

  /** Stops following the run. */
  close(): void {
    this.tail.close();
    this.directory.close();
    if (this.outputsTimer) clearInterval(this.outputsTimer);
    if (this.scheduled) clearTimeout(this.scheduled);
    this.listeners.clear();
  }
}
