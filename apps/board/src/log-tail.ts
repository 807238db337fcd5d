import { type FSWatcher, watch } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { StringDecoder } from 'node:string_decoder';

/** What a {@link LogTail} reports. */
export interface LogTailListener {
  /** Complete new lines, in order (a line still being written waits for its newline). */
  lines(lines: string[]): void;
  /** The file was replaced or truncated (a fresh run): everything sent so far is void; lines follow from 0. */
  reset(): void;
}

/**
 * Follows a growing text file such as `trainer_log.jsonl`: reads only the bytes past the last offset when
 * the directory watcher says the file changed (and on a slow safety timer for file systems without
 * notifications), so a long log is never read again in full. A file that shrinks or is replaced (another
 * inode: a new run writes it afresh) starts over from 0 with a `reset`. The file may not exist yet.
 */
export class LogTail {
  private offset = 0;
  private inode: number | undefined;
  private partial = '';
  // Keeps a UTF-8 character split across two reads whole.
  private decoder = new StringDecoder('utf8');
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private reading: Promise<void> = Promise.resolve();
  private again = false;
  private busy = false;
  private closed = false;

  constructor(
    readonly path: string,
    private readonly listener: LogTailListener,
    private readonly safetyIntervalMs = 1000,
  ) {}

  /** Sends what the file holds now, then follows it. */
  async start(): Promise<void> {
    try {
      // Watching the directory sees the atomic rename of a fresh log as well as appends.
      this.watcher = watch(dirname(this.path), (_event, name) => {
        if (name === null || name === basename(this.path)) this.poke();
      });
      this.watcher.on('error', () => this.watcher?.close());
    } catch {
      this.watcher = undefined; // the directory may not exist yet: the timer covers it
    }
    this.timer = setInterval(() => this.poke(), this.safetyIntervalMs);
    this.timer.unref();
    this.poke();
    await this.reading;
  }

  /** Reads whatever is new; resolves when the file has been read up to its current end. */
  poke(): Promise<void> {
    if (this.closed) return this.reading;
    if (this.busy) {
      this.again = true;
      return this.reading;
    }
    this.busy = true;
    this.reading = (async () => {
      do {
        this.again = false;
        await this.readNew();
      } while (this.again && !this.closed);
      this.busy = false;
    })();
    return this.reading;
  }

  private async readNew(): Promise<void> {
    let info: Awaited<ReturnType<typeof stat>>;
    try {
      info = await stat(this.path);
    } catch {
      return; // not written yet
    }
    if ((this.inode !== undefined && info.ino !== this.inode) || info.size < this.offset) {
      this.offset = 0;
      this.partial = '';
      this.decoder = new StringDecoder('utf8');
      this.listener.reset();
    }
    this.inode = info.ino;
    if (info.size === this.offset) return;
    const file = await open(this.path, 'r');
    try {
      const length = info.size - this.offset;
      const buffer = Buffer.alloc(length);
      const { bytesRead } = await file.read(buffer, 0, length, this.offset);
      this.offset += bytesRead;
      const text = this.partial + this.decoder.write(buffer.subarray(0, bytesRead));
      const end = text.lastIndexOf('\n');
      this.partial = text.slice(end + 1);
      const lines =
        end < 0
          ? []
          : text
              .slice(0, end)
              .split('\n')
              .filter((l) => l.trim() !== '');
      if (lines.length > 0) this.listener.lines(lines);
    } finally {
      await file.close();
    }
  }

  /** Stops following. */
  close(): void {
    this.closed = true;
    this.watcher?.close();
    if (this.timer) clearInterval(this.timer);
  }
}
