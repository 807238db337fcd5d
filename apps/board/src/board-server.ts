import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BoardRun, findRuns } from './board-runs.js';
import { PathRefusedError, resolveInside } from './path-inside.js';
import { RunFeed, type RunFeedEvent } from './run-feed.js';

/** Options of {@link startBoard}. */
export interface BoardOptions {
  /** Output directories of runs (or parents of runs, as `badam-llama compare` writes them). */
  readonly dirs: readonly string[];
  /** Port; 0 picks a free one. Default 6007. */
  readonly port?: number;
  /** Address to bind. Default `127.0.0.1`: the board is for this machine only unless told otherwise. */
  readonly host?: string;
  /** The bundled pages. Default: `dist/web` of this package. */
  readonly webRoot?: string;
  /** Where warnings go. Default stderr. */
  readonly warn?: (message: string) => void;
}

/** A running board. */
export interface Board {
  /** The page's address, e.g. `http://127.0.0.1:6007/`. */
  readonly url: string;
  /** The runs shown, in order (ids are positions). */
  readonly runs: readonly BoardRun[];
  /**
   * Adds a run directory as it is (no search below it; its log may not exist yet), and tells every open
   * page. The runners' `--board` adds each run's directory as it starts. Resolves with the run; a directory
   * already shown resolves with its run.
   */
  addRun(dir: string): Promise<BoardRun>;
  /** Stops the server and every file watcher. */
  close(): Promise<void>;
}

/** The event that names the runs (first on every stream, again when a run is added). */
interface RunsEvent {
  readonly type: 'runs';
  readonly runs: ReadonlyArray<{ id: number; name: string; dir: string }>;
}

/** `name`, or `parent/name` when another run already has that name. */
function uniqueName(name: string, dir: string, runs: readonly BoardRun[]): string {
  return runs.some((r) => r.name === name) ? `${basename(dirname(dir))}/${name}` : name;
}

/** Host headers a board bound to loopback accepts. */
const LOOPBACK_HOST = /^(127\.0\.0\.1|localhost|\[::1\])(:\d+)?$/i;

/** The board's default port (TensorBoard's is 6006). */
export const DEFAULT_BOARD_PORT = 6007;

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.jsonl': 'text/plain; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.png': 'image/png',
  '.txt': 'text/plain; charset=utf-8',
};

const PAGES: Readonly<Record<string, string>> = {
  '/': 'board.html',
  '/index.html': 'board.html',
  '/finetune': 'finetune.html',
  '/finetune/': 'finetune.html',
};

function defaultWebRoot(): string {
  // Built: dist/src/board-server.js -> dist/web. From source (tests): src/board-server.ts -> dist/web.
  const here = dirname(fileURLToPath(import.meta.url));
  return basename(dirname(here)) === 'dist' ? join(here, '..', 'web') : join(here, '..', 'dist', 'web');
}

function send(
  response: ServerResponse,
  status: number,
  body: string,
  type = 'text/plain; charset=utf-8',
): void {
  response.writeHead(status, { 'content-type': type });
  response.end(body);
}

async function sendFile(response: ServerResponse, path: string): Promise<void> {
  const body = await readFile(path);
  response.writeHead(200, {
    'content-type': CONTENT_TYPES[extname(path)] ?? 'application/octet-stream',
    'cache-control': 'no-cache',
  });
  response.end(body);
}

/**
 * Serves the board: the pages, the runs' live data as server-sent events, and the files inside the runs'
 * directories (and nothing else: a path outside them, with `..` or encoded, is refused with 403). Binds
 * to 127.0.0.1 unless `host` says otherwise, and then answers only requests addressed to a loopback name
 * (a page elsewhere cannot reach it by DNS rebinding). Every response is cross-origin isolated, so the fine-tune
 * page's wasm backend may use threads.
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
  const runs: BoardRun[] = await findRuns(options.dirs);
  const webRoot = options.webRoot ?? defaultWebRoot();
  const feeds = runs.map((run) => new RunFeed(run, warn));
  await Promise.all(feeds.map((feed) => feed.start()));
  const streams = new Set<ServerResponse>();
  /** Each open page's writer, to tell it about runs added later. */
  const writers = new Map<ServerResponse, (event: RunFeedEvent | RunsEvent) => void>();
  const unsubscribers = new Map<ServerResponse, Array<() => void>>();
  const runsEvent = (): RunsEvent => ({
    type: 'runs',
    runs: runs.map(({ id, name, dir }) => ({ id, name, dir })),
  });

  const events = (request: IncomingMessage, response: ServerResponse) => {
    response.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
    });
    streams.add(response);
    const write = (event: RunFeedEvent | RunsEvent) =>
      response.write(`event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
    writers.set(response, write);
    write(runsEvent());
    const unsubscribe = feeds.map((feed) => feed.subscribe(write));
    unsubscribers.set(response, unsubscribe);
    // A comment every 15 s keeps proxies and idle timeouts from closing a quiet stream.
    const keepAlive = setInterval(() => response.write(': keep-alive\n\n'), 15_000);
    request.on('close', () => {
      clearInterval(keepAlive);
      for (const u of unsubscribers.get(response) ?? []) u();
      streams.delete(response);
      writers.delete(response);
      unsubscribers.delete(response);
    });
  };

  const handle = async (request: IncomingMessage, response: ServerResponse) => {
    response.setHeader('cross-origin-opener-policy', 'same-origin');
    response.setHeader('cross-origin-embedder-policy', 'require-corp');
    response.setHeader('x-content-type-options', 'nosniff');
    if (loopback && !LOOPBACK_HOST.test(request.headers.host ?? '')) {
      // DNS rebinding: a web page elsewhere that points its own name at 127.0.0.1 would reach the board
      // with that name in Host. A board on loopback answers only to loopback names.
      send(
        response,
        403,
        `refused Host ${JSON.stringify(request.headers.host ?? '')}: this board answers to 127.0.0.1, localhost and [::1]`,
      );
      return;
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      send(response, 405, `${request.method} is not served: the board only reads`);
      return;
    }
    // The raw path, not a URL parser's normalised one: `..` must be seen to be refused.
    const path = (request.url ?? '/').split(/[?#]/)[0]!;
    try {
      const page = PAGES[path];
      if (page !== undefined) return await sendFile(response, join(webRoot, page));
      if (path === '/api/events') return events(request, response);
      if (path === '/favicon.ico') return send(response, 204, '');
      if (path === '/api/runs') {
        return send(
          response,
          200,
          JSON.stringify(runs.map(({ id, name, dir }) => ({ id, name, dir }))),
          CONTENT_TYPES['.json'],
        );
      }
      if (path.startsWith('/assets/')) {
        return await sendFile(response, await resolveInside(webRoot, path.slice('/assets/'.length)));
      }
      const file = /^\/runs\/(\d+)\/(.*)$/.exec(path);
      if (file) {
        const run = runs[Number(file[1])];
        if (run === undefined)
          return send(response, 404, `no run ${file[1]}: the board shows runs 0 to ${runs.length - 1}`);
        return await sendFile(response, await resolveInside(run.dir, file[2]!));
      }
      send(response, 404, `${path} is not a page of the board: open / or /finetune`);
    } catch (error) {
      if (error instanceof PathRefusedError) return send(response, 403, error.message);
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'EISDIR' || code === 'ENOTDIR')
        return send(response, 404, `${path}: no such file`);
      warn(`badam-board: ${path}: ${(error as Error).message}`);
      send(response, 500, (error as Error).message);
    }
  };

  const host = options.host ?? '127.0.0.1';
  const loopback = ['127.0.0.1', 'localhost', '::1'].includes(host);
  const server: Server = createServer((request, response) => void handle(request, response));
  await new Promise<void>((done, fail) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      fail(
        error.code === 'EADDRINUSE'
          ? new Error(
              `port ${options.port ?? DEFAULT_BOARD_PORT} is in use: pass --port <another>, or --port 0 for any free port`,
            )
          : error,
      ),
    );
    server.listen(options.port ?? DEFAULT_BOARD_PORT, host, () => done());
  });
  const { port } = server.address() as AddressInfo;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shownHost}:${port}/`,
    runs,
    async addRun(dir: string) {
      const absolute = resolve(dir);
      const known = runs.find((r) => r.dir === absolute);
      if (known) return known;
      const run: BoardRun = {
        id: runs.length,
        name: uniqueName(basename(absolute), absolute, runs),
        dir: absolute,
      };
      runs.push(run);
      const feed = new RunFeed(run, warn);
      feeds.push(feed);
      await feed.start();
      for (const [response, write] of writers) {
        write(runsEvent());
        unsubscribers.get(response)!.push(feed.subscribe(write));
      }
      return run;
    },
    async close() {
      for (const feed of feeds) feed.close();
      for (const stream of streams) stream.end();
      await new Promise<void>((done) => server.close(() => done()));
    },
  };
}
