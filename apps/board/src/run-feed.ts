import { type FSWatcher, watch } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type BoardRun, RESULTS_FILES, TRAINER_LOG_FILE } from './board-runs.js';
import { LogTail } from './log-tail.js';

/** One `trainer_log.jsonl` line, parsed. */
export type TrainerLogLine = Record<string, unknown>;

/** What a {@link RunFeed} tells its subscribers. */
export type RunFeedEvent =
  | { readonly type: 'lines'; readonly run: number; readonly lines: readonly TrainerLogLine[] }
  | { readonly type: 'reset'; readonly run: number }
  | { readonly type: 'results'; readonly run: number; readonly results: Readonly<Record<string, unknown>> };

/**
 * One run's live data, shared by every page that watches it: the log lines so far (followed with a
 * {@link LogTail}, so only new bytes are read) and the results files, read again when the directory
 * says one changed. A new subscriber first gets everything known, then the changes.
 */
export class RunFeed {
  private lines: TrainerLogLine[] = [];
  private results: Record<string, unknown> = {};
  private readonly listeners = new Set<(event: RunFeedEvent) => void>();
  private readonly tail: LogTail;
  private watcher: FSWatcher | undefined;
  private resultsTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly run: BoardRun,
    private readonly warn: (message: string) => void = (m) => console.error(m),
  ) {
    this.tail = new LogTail(join(run.dir, TRAINER_LOG_FILE), {
      lines: (raw) => {
        const parsed: TrainerLogLine[] = [];
        for (const line of raw) {
          try {
            parsed.push(JSON.parse(line) as TrainerLogLine);
          } catch {
            this.warn(`badam-board: ${join(run.dir, TRAINER_LOG_FILE)}: skipped a line that is not JSON`);
          }
        }
        this.lines.push(...parsed);
        if (parsed.length > 0) this.emit({ type: 'lines', run: run.id, lines: parsed });
      },
      reset: () => {
        this.lines = [];
        this.results = {};
        this.emit({ type: 'reset', run: run.id });
      },
    });
  }

  /** Reads what the run has written so far and starts following it. */
  async start(): Promise<void> {
    await this.tail.start();
    await this.readResults();
    try {
      this.watcher = watch(this.run.dir, (_event, name) => {
        if (name !== null && (RESULTS_FILES as readonly string[]).includes(name)) this.scheduleResults();
      });
      this.watcher.on('error', () => this.watcher?.close());
    } catch {
      this.watcher = undefined;
    }
  }

  private scheduleResults(): void {
    // Results files are written once at the end, atomically: one read shortly after the burst of events.
    if (this.resultsTimer) clearTimeout(this.resultsTimer);
    this.resultsTimer = setTimeout(() => void this.readResults(), 50);
  }

  private async readResults(): Promise<void> {
    const results: Record<string, unknown> = {};
    for (const file of RESULTS_FILES) {
      try {
        results[file] = JSON.parse(await readFile(join(this.run.dir, file), 'utf8'));
      } catch {
        // absent (the run is not finished) or mid-write: the next change event reads it again
      }
    }
    if (JSON.stringify(results) === JSON.stringify(this.results)) return;
    this.results = results;
    this.emit({ type: 'results', run: this.run.id, results });
  }

  /** Calls `listener` with everything known now, then with every change; returns the unsubscribe. */
  subscribe(listener: (event: RunFeedEvent) => void): () => void {
    listener({ type: 'reset', run: this.run.id });
    if (this.lines.length > 0) listener({ type: 'lines', run: this.run.id, lines: [...this.lines] });
    if (Object.keys(this.results).length > 0)
      listener({ type: 'results', run: this.run.id, results: this.results });
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(event: RunFeedEvent): void {
    for (const listener of this.listeners) listener(event);
  }

  /** Stops following the run. */
  close(): void {
    this.tail.close();
    this.watcher?.close();
    if (this.resultsTimer) clearTimeout(this.resultsTimer);
    this.listeners.clear();
  }
}
