import { type ChildProcess, spawn } from 'node:child_process';
import { basename, dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** A board running in a child process. */
export interface SpawnedBoard {
  readonly url: string;
  readonly process: ChildProcess;
  /** Shows one more run directory (as it is; its log may not exist yet). */
  watch(dir: string): void;
  /** Stops the board. */
  close(): void;
}

/**
 * Starts `badam-board --stdin` in a child process, beside a training run in this one (a training step
 * blocks its event loop; the board's must stay free to stream), showing `dirs` and whatever
 * {@link SpawnedBoard.watch} adds. Resolves once it listens; the board stops when this process exits. The
 * runners' `--board` flag uses it.
 *
 * @example
 * ```ts
 * const board = await spawnBoard([], { port: 0 });
 * board.watch('output/embedded-block');
 * console.log(`watch the run at ${board.url}`);
 * ```
 */
export async function spawnBoard(
  dirs: readonly string[],
  options: { port?: number; host?: string } = {},
): Promise<SpawnedBoard> {
  // Built: dist/src/cli.js beside this module. From source (tests): the built one.
  const here = dirname(fileURLToPath(import.meta.url));
  const cli =
    basename(dirname(here)) === 'dist' ? join(here, 'cli.js') : join(here, '..', 'dist', 'src', 'cli.js');
  const args = [cli, ...dirs, '--stdin'];
  if (options.port !== undefined) args.push('--port', String(options.port));
  if (options.host !== undefined) args.push('--host', options.host);
  const child = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  const stopChild = () => child.kill();
  process.once('exit', stopChild);
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const url = await new Promise<string>((done, fail) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      const match = /^badam-board: (http:\/\/\S+\/) /.exec(line);
      if (match) done(match[1]!);
    });
    child.once('exit', (code) =>
      fail(new Error(`badam-board exited with ${code} before listening: ${stderr.trim()}`)),
    );
    child.once('error', fail);
  });
  // Keep reading, so a full pipe never blocks the board; nobody needs its further lines.
  child.stdout!.resume();
  child.unref();
  for (const stream of [child.stdin, child.stdout, child.stderr])
    (stream as unknown as { unref?(): void })?.unref?.();
  return {
    url,
    process: child,
    watch(dir) {
      child.stdin!.write(`watch ${resolve(dir)}\n`);
    },
    close() {
      process.removeListener('exit', stopChild);
      child.kill();
    },
  };
}
