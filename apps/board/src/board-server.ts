import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { boardRequestHandler } from './board-routes.js';
import {
  type BoardComparison,
  type BoardRun,
  comparisonCellOf,
  type DiscoveryLimits,
  describeRuns,
  discoverRuns,
} from './board-runs.js';
import { type ComparisonEvent, ComparisonFeed } from './comparison-feed.js';
import { EventStreams, type StreamSource } from './event-streams.js';
import { isLoopbackHost } from './loopback.js';
import { RunFeed, type RunFeedEvent } from './run-feed.js';

/** Options of {@link startBoard}. */
export interface BoardOptions {
  /** Output directories of runs, or directories above them (a comparison's): runs are found at any depth. */
  readonly dirs: readonly string[];
  /** Port; 0 picks a free one. Default 6007. */
  readonly port?: number;
  /** Address to bind. Default `127.0.0.1`: the board is for this machine only unless told otherwise. */
  readonly host?: string;
  /** The bundled pages. Default: `dist/web` of this package. */
  readonly webRoot?: string;
  /** Where warnings go. Default stderr. */
  readonly warn?: (message: string) => void;
  /** How far to look for runs below each directory. */
  readonly limits?: DiscoveryLimits;
  /** The log's safety timer, in ms (tests shorten it). Default 1000. */
  readonly safetyIntervalMs?: number;
}

/** A running board. */
export interface Board {
  /** The page's address, e.g. `http://127.0.0.1:6007/`. */
  readonly url: string;
  /** The runs shown, in order (ids are positions); names may grow when a run with the same name joins. */
  readonly runs: readonly BoardRun[];
  /** The comparisons shown (their tables and plots), in order. */
  readonly comparisons: readonly BoardComparison[];
  /**
   * Adds a run directory as it is (no search below it; its log may not exist yet), and tells every open
   * page. The runners' `--board` adds each run's directory as it starts. Resolves with the run; a directory
   * already shown resolves with its run.
   */
  addRun(dir: string): Promise<BoardRun>;
  /**
   * Stops the server and every file watcher. Open pages are told first, with `reason` (default: the board
   * was stopped), and keep the charts as they are: a final state, not a page waiting to reconnect.
   */
  close(reason?: string): Promise<void>;
}

/** The event that names the runs and comparisons (first on every stream, again when a run is added). */
interface RunsEvent {
  readonly type: 'runs';
  readonly runs: readonly BoardRun[];
  readonly comparisons: readonly BoardComparison[];
}

/** The last event of every stream when the board stops. */
interface ClosedEvent {
  readonly type: 'closed';
  readonly message: string;
}

type BoardEvent = RunFeedEvent | ComparisonEvent | RunsEvent | ClosedEvent;

/** The board's default port (TensorBoard's is 6006). */
export const DEFAULT_BOARD_PORT = 6007;

function defaultWebRoot(): string {
  // Built: dist/src/board-server.js -> dist/web. From source (tests): src/board-server.ts -> dist/web.
  const here = dirname(fileURLToPath(import.meta.url));
  return basename(dirname(here)) === 'dist' ? join(here, '..', 'web') : join(here, '..', 'dist', 'web');
}

/** Listens, or says why not in words that name the fix (a busy port, an address this machine lacks). */
async function listen(server: Server, port: number, host: string): Promise<void> {
  await new Promise<void>((done, fail) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      const hints: Record<string, string> = {
        EADDRINUSE: `port ${port} is in use: pass --port <another>, or --port 0 for any free port`,
        EACCES: `port ${port} needs privileges: pass --port 1024 or above, or --port 0 for any free port`,
        EADDRNOTAVAIL: `${host} is not an address of this machine: pass --host 127.0.0.1 (or another address it has)`,
      };
      fail(new Error(hints[error.code ?? ''] ?? `cannot listen on ${host}:${port}: ${error.message}`));
    });
    server.listen(port, host, () => done());
  });
}

/**
 * Serves the board: the pages, the runs' live data as server-sent events, and the runs' training outputs
 * (trainer_log.jsonl, *_results.json and *.png in each run's directory; a comparison's table, results and
 * plot) and nothing else: any other file, a path that leads outside (`..`, encoded or through a link), a
 * named pipe, is refused. Binds to 127.0.0.1 unless `host` says otherwise, and on a loopback address answers
 * only requests addressed to a loopback name (a page elsewhere cannot reach it by DNS rebinding). Every
 * response is cross-origin isolated, so the fine-tune page's wasm backend may use threads.
 *
 * @example
 * ```ts
 * const board = await startBoard({ dirs: ['output/embedded-block'], port: 0 });
 * console.log(`open ${board.url}`);
 * // ... later
 * await board.close();
 * ```
 */
export async function startBoard(options: BoardOptions): Promise<Board> {
  const warn = options.warn ?? ((m: string) => console.error(m));
  const discovered = await discoverRuns(options.dirs, options.limits);
  for (const note of discovered.notes) warn(`badam-board: ${note}`);
  const runDirs = [...discovered.runs];
  const comparisonDirs = [...discovered.comparisons];
  const runs: BoardRun[] = describeRuns(runDirs, comparisonDirs);
  const comparisons: BoardComparison[] = [];
  const webRoot = options.webRoot ?? defaultWebRoot();
  const feedOptions = {
    warn,
    ...(options.safetyIntervalMs ? { safetyIntervalMs: options.safetyIntervalMs } : {}),
  };
  const feeds: RunFeed[] = [];
  const comparisonFeeds: ComparisonFeed[] = [];
  let closed = false;
  const runsEvent = (): RunsEvent => ({ type: 'runs', runs, comparisons });
  const streams = new EventStreams<BoardEvent>(runsEvent, () => [
    ...(feeds as Array<StreamSource<BoardEvent>>),
    ...(comparisonFeeds as Array<StreamSource<BoardEvent>>),
  ]);

  const host = options.host ?? '127.0.0.1';
  const handle = boardRequestHandler({
    webRoot,
    runs,
    comparisons,
    loopback: isLoopbackHost(host),
    openEvents: (request, response) => streams.open(request, response),
    runsJson: () => JSON.stringify(runs),
    warn,
  });
  const server: Server = createServer((request, response) => void handle(request, response));
  // Listen first: a busy port fails before any watcher starts, so the process can exit at once.
  await listen(server, options.port ?? DEFAULT_BOARD_PORT, host);

  const addComparison = async (dir: string): Promise<BoardComparison> => {
    const known = comparisons.find((c) => c.dir === dir);
    if (known) return known;
    const comparison: BoardComparison = { id: comparisons.length, name: basename(dir), dir };
    comparisons.push(comparison);
    const feed = new ComparisonFeed(comparison);
    await feed.start();
    // Streams opened from here on subscribe themselves; those open now are subscribed here.
    comparisonFeeds.push(feed);
    streams.follow(feed as StreamSource<BoardEvent>);
    return comparison;
  };
  for (const dir of comparisonDirs) await addComparison(dir);
  for (const run of runs) feeds.push(new RunFeed(run, feedOptions));
  await Promise.all(feeds.map((feed) => feed.start()));

  const { port } = server.address() as AddressInfo;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shownHost}:${port}/`,
    runs,
    comparisons,
    async addRun(dir: string) {
      const absolute = resolve(dir);
      const known = runs.find((r) => r.dir === absolute);
      if (known) return known;
      const cell = comparisonCellOf(absolute);
      if (cell !== undefined && !comparisonDirs.includes(cell.comparisonDir))
        comparisonDirs.push(cell.comparisonDir);
      runDirs.push(absolute);
      // Names follow one rule over all runs: a new `seed-1` can lengthen an earlier run's name.
      runs.splice(0, runs.length, ...describeRuns(runDirs, comparisonDirs));
      const run = runs.at(-1)!;
      const feed = new RunFeed(run, feedOptions);
      if (cell !== undefined) await addComparison(cell.comparisonDir);
      await feed.start();
      feeds.push(feed);
      streams.broadcast(runsEvent());
      streams.follow(feed as StreamSource<BoardEvent>);
      return run;
    },
    async close(reason?: string) {
      if (closed) return;
      closed = true;
      const message = reason ?? 'badam-board was stopped: the charts keep what they show';
      for (const feed of [...feeds, ...comparisonFeeds]) feed.close();
      streams.end({ type: 'closed', message });
      const closing = new Promise<void>((done) => server.close(() => done()));
      server.closeIdleConnections();
      // The streams just ended: give their last event a moment to leave, then drop what is left.
      setTimeout(() => server.closeAllConnections(), 200).unref();
      await closing;
    },
  };
}
