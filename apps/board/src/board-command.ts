import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { UsageError } from '@badam/core';
import { type Board, DEFAULT_BOARD_PORT, startBoard } from './board-server.js';
import { isLoopbackHost } from './loopback.js';

/** What the page says when the process that started a `--stdin` board ends. */
export const PARENT_ENDED =
  'the process that started this board has ended (its training is over): the charts show the final state';

/** The command line's help. */
export const BOARD_USAGE = `Usage: badam-board OUTPUT_DIR... [--port ${DEFAULT_BOARD_PORT}] [--host 127.0.0.1]

Serves a page that shows BAdam runs live from their trainer_log.jsonl and results files: loss (raw and
smoothed) and eval loss, learning rate, gradient norm, tokens/s, memory by kind and the block timeline.
Several directories overlay; runs are found at any depth below a directory (badam-llama compare's
<method>/seed-<n>), grouped by method. Only training outputs are served: trainer_log.jsonl, *_results.json
and *.png in each run directory, and a comparison's compare_table.md, compare_results.json and plot.
/finetune fine-tunes a tiny Llama with BAdam inside the page.

  --port <n>     port to listen on; 0 picks a free one (default ${DEFAULT_BOARD_PORT})
  --host <addr>  address to bind (default 127.0.0.1: this machine only; any 127.x.x.x, ::1 or
                 localhost is too, and other addresses let other machines read the runs' outputs)
  --stdin        also show the run directories named on standard input, one "watch DIR" line each, as
                 they come; the board stops when standard input closes (the runners' --board starts
                 the board this way)
  -h, --help     show this help
  -V, --version  print the version`;

/** Where the command writes. */
export interface BoardIO {
  log(message: string): void;
  warn(message: string): void;
}

/** Parses `badam-board`'s command line. */
export function parseBoardArgs(argv: readonly string[]): {
  dirs: string[];
  port: number;
  host: string;
  stdin: boolean;
  help: boolean;
} {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      options: {
        port: { type: 'string' },
        host: { type: 'string' },
        stdin: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const { values, positionals } = parsed;
  const portText = (values.port as string | undefined) ?? String(DEFAULT_BOARD_PORT);
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new UsageError(`--port must be an integer from 0 to 65535, got ${JSON.stringify(portText)}`);
  }
  const help = values.help === true;
  const stdin = values.stdin === true;
  if (positionals.length === 0 && !help && !stdin) {
    throw new UsageError(
      'name at least one OUTPUT_DIR: the --output_dir of a badam-llama or badam-roberta run',
    );
  }
  return { dirs: positionals, port, host: (values.host as string | undefined) ?? '127.0.0.1', stdin, help };
}

/**
 * `badam-board OUTPUT_DIR...`: starts the board and prints its address (`badam-board: http://...`, the
 * line {@link spawnBoard} waits for). Resolves with the running board, or undefined after `--help`.
 */
export async function runBoardCommand(
  argv: readonly string[],
  io: BoardIO,
  input?: NodeJS.ReadableStream,
  onStdinClosed: () => void = () => {},
): Promise<Board | undefined> {
  const options = parseBoardArgs(argv);
  if (options.help) {
    io.log(BOARD_USAGE);
    return undefined;
  }
  if (!isLoopbackHost(options.host)) {
    io.warn(
      `badam-board: binding ${options.host}: other machines can read these runs' logs and results (use the default 127.0.0.1 to keep them local)`,
    );
  }
  const board = await startBoard({
    dirs: options.dirs,
    port: options.port,
    host: options.host,
    warn: io.warn,
  });
  if (board.runs.length > 0)
    io.log(`badam-board: ${board.runs.length} run(s): ${board.runs.map((r) => r.dir).join(', ')}`);
  if (options.stdin && input !== undefined) {
    const lines = createInterface({ input });
    // The process that started the board owns it: when its end of the pipe closes, the board stops.
    lines.on('close', () => void board.close(PARENT_ENDED).then(onStdinClosed));
    lines.on('line', (line) => {
      const match = /^watch (.+)$/.exec(line.trim());
      if (match === null) {
        io.warn(`badam-board: ignored ${JSON.stringify(line)} on stdin: expected "watch DIR"`);
        return;
      }
      board.addRun(match[1]!).then(
        (run) => io.log(`badam-board: run ${run.id}: ${run.dir}`),
        (error: Error) => io.warn(`badam-board: ${match[1]}: ${error.message}`),
      );
    });
  }
  io.log(`badam-board: ${board.url} (fine-tune in the page: ${board.url}finetune)`);
  return board;
}
