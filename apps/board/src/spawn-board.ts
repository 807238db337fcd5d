import { type ChildProcess, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** A board running in a child process. */
export interface SpawnedBoard {
  readonly url: string;
  readonly process: ChildProcess;
  /** Stops the board. */
  close(): void;
}

/**
 * Starts `badam-board` on `dirs` in a child process, beside a training run in this one (a training step
 * blocks its event loop; the board's must stay free to stream). Resolves with the board's address once it
 * listens; the board stops when this process exits. The runners' `--board` flag uses it.
 *
 * @example
 * ```ts
 * const board = await spawnBoard(['output/embedded-block'], { port: 0 });
 * console.log(`watch the run at ${board.url}`);
 * ```
 */
export async function spawnBoard(
  dirs: readonly string[],
  options: { port?: number; host?: string } = {},
): Promise<SpawnedBoard> {
  const cli = join(dirname(fileURLToPath(import.meta.url)), 'cli.js');
  const args = [cli, ...dirs];
  if (options.port !== undefined) args.push('--port', String(options.port));
  if (options.host !== undefined) args.push('--host', options.host);
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
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
  return {
    url,
    process: child,
    close() {
      process.removeListener('exit', stopChild);
      child.kill();
    },
  };
}
