import type { BoardComparison } from './board-runs.js';
import { DirectoryWatch } from './directory-watch.js';
import { type OutputImage, readOutputFiles } from './output-files.js';
import { IMAGE_FILE } from './served-files.js';

/** The comparison's table, as `compare` writes it (Markdown). */
const TABLE_FILE = 'compare_table.md';

/** What a {@link ComparisonFeed} tells its subscribers: the comparison's table and images, when they change. */
export interface ComparisonEvent {
  readonly type: 'comparison';
  readonly comparison: number;
  /** compare_table.md's text, once written (the comparison's summary: mean ± sd over seeds per method). */
  readonly table?: string;
  readonly images: readonly OutputImage[];
}

/**
 * A comparison's outputs, followed: `compare_table.md` and its images (compare_loss.png), which `compare`
 * writes when every run is done. Read at the start, when the directory says one changed, and on a slow
 * timer (a directory made again, a file system without notifications).
 */
export class ComparisonFeed {
  private event: ComparisonEvent;
  private readonly listeners = new Set<(event: ComparisonEvent) => void>();
  private readonly directory: DirectoryWatch;
  private timer: NodeJS.Timeout | undefined;
  private scheduled: NodeJS.Timeout | undefined;

  constructor(
    readonly comparison: BoardComparison,
    private readonly intervalMs = 2000,
  ) {
    this.event = { type: 'comparison', comparison: comparison.id, images: [] };
    this.directory = new DirectoryWatch(comparison.dir, (name) => {
      if (name === null || name === TABLE_FILE || IMAGE_FILE.test(name)) this.schedule();
    });
  }

  /** Reads what is there and starts following. */
  async start(): Promise<void> {
    await this.read();
    await this.directory.check();
    this.timer = setInterval(() => {
      void this.directory.check();
      this.schedule();
    }, this.intervalMs);
    this.timer.unref();
  }

  private schedule(): void {
    if (this.scheduled) clearTimeout(this.scheduled);
    this.scheduled = setTimeout(() => void this.read(), 50);
  }

  private async read(): Promise<void> {
    const { files, images } = await readOutputFiles(this.comparison.dir, (n) => n === TABLE_FILE);
    const table = files[TABLE_FILE];
    const event: ComparisonEvent = {
      type: 'comparison',
      comparison: this.comparison.id,
      ...(typeof table === 'string' ? { table } : {}),
      images,
    };
    if (JSON.stringify(event) === JSON.stringify(this.event)) return;
    this.event = event;
    for (const listener of this.listeners) listener(event);
  }

  /** Calls `listener` with what is known now, then with every change; returns the unsubscribe. */
  subscribe(listener: (event: ComparisonEvent) => void): () => void {
    listener(this.event);
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Stops following. */
  close(): void {
    this.directory.close();
    if (this.timer) clearInterval(this.timer);
    if (this.scheduled) clearTimeout(this.scheduled);
    this.listeners.clear();
  }
}
