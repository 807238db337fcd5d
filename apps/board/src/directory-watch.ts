import { type FSWatcher, watch } from 'node:fs';
import { stat } from 'node:fs/promises';

/**
 * Watches a directory's entries and says which name changed, and keeps watching when the directory is
 * deleted and made again (a fresh run in the same output directory): {@link DirectoryWatch.check}, called
 * on its owner's safety timer, watches the new directory once it exists. A directory that does not exist
 * yet is watched once it does. Never throws: a file system without notifications leaves the owner's timer.
 */
export class DirectoryWatch {
  private watcher: FSWatcher | undefined;
  private identity: string | undefined;
  private closed = false;

  constructor(
    readonly dir: string,
    private readonly onChange: (name: string | null) => void,
  ) {}

  /** Starts watching if the directory exists and is not watched (or was replaced); resolves when done. */
  async check(): Promise<void> {
    if (this.closed) return;
    let identity: string | undefined;
    try {
      const info = await stat(this.dir);
      identity = info.isDirectory() ? `${info.dev}:${info.ino}:${info.birthtimeMs}` : undefined;
    } catch {
      identity = undefined;
    }
    if (identity === this.identity && (this.watcher !== undefined || identity === undefined)) return;
    this.stop();
    this.identity = identity;
    if (identity === undefined || this.closed) return;
    try {
      const watcher = watch(this.dir, (_event, name) => this.onChange(name === null ? null : String(name)));
      watcher.on('error', () => {
        // The directory went away (or the watch broke): the next check watches again if it comes back.
        if (this.watcher === watcher) this.stop();
      });
      this.watcher = watcher;
      // The directory may have changed while it was not watched.
      this.onChange(null);
    } catch {
      this.watcher = undefined;
    }
  }

  private stop(): void {
    this.watcher?.close();
    this.watcher = undefined;
  }

  /** Stops watching. */
  close(): void {
    this.closed = true;
    this.stop();
  }
}
