import { stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { DirectoryWatch } from './directory-watch.js';
import { openRegularFile } from './regular-file.js';

/** What a {@link LogTail} reports. */
export interface LogTailListener {
  /** Complete new lines, in order (a line still being written waits for its newline). */
  lines(lines: string[]): void;
  /** The file was replaced or truncated (a fresh run): everything sent so far is void; lines follow from 0. */
  reset(): void;
  /**
   * The file cannot be read now (permission denied, not a regular file, a line too long to hold), said
   * once until it reads again. Reading goes on at the next change or tick.
   */
  problem?(message: string): void;
  /** A read has caught up with the end of the file: the lines since the last call are all there is. */
  caughtUp?(): void;
}

/** Options of a {@link LogTail}. */
export interface LogTailOptions {
  /** How often to look without a notification (file systems without them, a directory made again). Default 1000 ms. */
  readonly safetyIntervalMs?: number;
  /** Bytes read at once: memory stays within a few of these whatever the file's size. Default 1 MiB. */
  readonly chunkBytes?: number;
  /** A line longer than this many characters is skipped (with a {@link LogTailListener.problem}). Default 8 Mi. */
  readonly maxLineBytes?: number;
}

/**
 * Follows a growing text file such as `trainer_log.jsonl`: reads only the bytes past the last offset, a
 * chunk at a time, when the directory watcher says the file changed (and on a safety timer for file
 * systems without notifications), so a long log is never read again and never held whole. A file that
 * shrinks or is replaced (another file: a new run writes it afresh, or its directory is deleted and made
 * again) starts over from 0 with a `reset`. The file may not exist yet. Read errors never escape: they are
 * reported once through `problem` and reading is tried again.
 */
export class LogTail {
  private offset = 0;
  /** Which file was read (device, inode, birth time); 'gone' after it disappeared. */
  private identity: string | undefined;
  private partial = '';
  private skippingLongLine = false;
  // Keeps a UTF-8 character split across two reads whole.
  private decoder = new StringDecoder('utf8');
  private readonly directory: DirectoryWatch;
  private timer: NodeJS.Timeout | undefined;
  private reading: Promise<void> = Promise.resolve();
  private again = false;
  private busy = false;
  private closed = false;
  private lastProblem: string | undefined;
  private readonly options: Required<LogTailOptions>;

  /** @param options the options, or (as before) the safety interval in milliseconds */
  constructor(
    readonly path: string,
    private readonly listener: LogTailListener,
    options: LogTailOptions | number = {},
  ) {
    const given = typeof options === 'number' ? { safetyIntervalMs: options } : options;
    this.options = {
      safetyIntervalMs: given.safetyIntervalMs ?? 1000,
      chunkBytes: given.chunkBytes ?? 2 ** 20,
      maxLineBytes: given.maxLineBytes ?? 8 * 2 ** 20,
    };
    // Watching the directory sees the atomic rename of a fresh log as well as appends.
    this.directory = new DirectoryWatch(dirname(path), (name) => {
      if (name === null || name === basename(path)) void this.poke();
    });
  }

  /** Sends what the file holds now, then follows it. */
  async start(): Promise<void> {
    await this.directory.check();
    this.timer = setInterval(() => {
      void this.directory.check();
      void this.poke();
    }, this.options.safetyIntervalMs);
    this.timer.unref();
    await this.poke();
  }

  /** Reads whatever is new; resolves when the file has been read up to its current end. Never rejects. */
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
        try {
          await this.readNew();
        } catch (error) {
          this.report(`cannot read ${this.path}: ${(error as Error).message}`);
        }
      } while (this.again && !this.closed);
      this.busy = false;
    })();
    return this.reading;
  }

  private report(message: string): void {
    if (message === this.lastProblem) return;
    this.lastProblem = message;
    this.listener.problem?.(message);
  }

  private startOver(): void {
    this.offset = 0;
    this.partial = '';
    this.skippingLongLine = false;
    this.decoder = new StringDecoder('utf8');
    this.listener.reset();
  }

  private async readNew(): Promise<void> {
    let info: Awaited<ReturnType<typeof stat>>;
    try {
      info = await stat(this.path);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw error;
      // Not written yet, or gone with its directory: a file that comes back is another one.
      if (this.identity !== undefined) this.identity = 'gone';
      return;
    }
    if (!info.isFile()) {
      this.report(`${this.path} is not a regular file (a named pipe, device or directory): not read`);
      return;
    }
    const identity = `${info.dev}:${info.ino}:${info.birthtimeMs}`;
    if ((this.identity !== undefined && identity !== this.identity) || info.size < this.offset) {
      this.startOver();
    }
    this.identity = identity;
    if (info.size === this.offset) {
      this.lastProblem = undefined;
      this.listener.caughtUp?.();
      return;
    }
    const { handle } = await openRegularFile(this.path);
    try {
      const buffer = Buffer.alloc(Math.min(this.options.chunkBytes, info.size - this.offset));
      while (!this.closed) {
        const { bytesRead } = await handle.read(buffer, 0, buffer.length, this.offset);
        if (bytesRead === 0) break;
        this.offset += bytesRead;
        this.take(this.decoder.write(buffer.subarray(0, bytesRead)));
      }
    } finally {
      await handle.close();
    }
    this.lastProblem = undefined;
    this.listener.caughtUp?.();
  }

  /** Splits decoded text into complete lines, keeping the unfinished end, skipping an overlong line. */
  private take(text: string): void {
    let start = 0;
    const lines: string[] = [];
    let end = text.indexOf('\n');
    while (end >= 0) {
      const line = this.partial + text.slice(start, end);
      this.partial = '';
      if (this.skippingLongLine) this.skippingLongLine = false;
      else if (line.trim() !== '') lines.push(line);
      start = end + 1;
      end = text.indexOf('\n', start);
    }
    if (!this.skippingLongLine) this.partial += text.slice(start);
    if (this.partial.length > this.options.maxLineBytes) {
      this.partial = '';
      this.skippingLongLine = true;
      this.listener.problem?.(
        `${this.path}: skipped a line longer than ${this.options.maxLineBytes} bytes (not a log line)`,
      );
    }
    if (lines.length > 0) this.listener.lines(lines);
  }

  /** Stops following. */
  close(): void {
    this.closed = true;
    this.directory.close();
    if (this.timer) clearInterval(this.timer);
  }
}
