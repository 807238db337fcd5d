import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { CONTENT_TYPES, send, sendFile } from './board-http.js';
import type { BoardComparison, BoardRun } from './board-runs.js';
import { isLoopbackHostHeader } from './loopback.js';
import { PathRefusedError, resolveInside, safeSegments } from './path-inside.js';
import { isServedComparisonFile, isServedRunFile, SERVED_FILES_NOTE } from './served-files.js';

/** The pages the board serves, by path. */
const PAGES: Readonly<Record<string, string>> = {
  '/': 'board.html',
  '/index.html': 'board.html',
  '/finetune': 'finetune.html',
  '/finetune/': 'finetune.html',
};

/** What the board's request handler reads. */
export interface BoardRoutes {
  /** The bundled pages. */
  readonly webRoot: string;
  readonly runs: readonly BoardRun[];
  readonly comparisons: readonly BoardComparison[];
  /** Bound to a loopback address: answer only requests addressed to a loopback name. */
  readonly loopback: boolean;
  /** Answers `/api/events`. */
  openEvents(request: IncomingMessage, response: ServerResponse): void;
  /** The body of `/api/runs`: the runs, as a list (each with its id, name, dir, and group and seed in a comparison). */
  runsJson(): string;
  warn(message: string): void;
}

/**
 * The board's request handler: its pages and bundles, the event stream, and each run's and comparison's
 * training outputs on the allow-list ({@link isServedRunFile}), each directly in its directory and inside
 * it for real; every refusal says why (403), a missing file is 404, and nothing throws.
 */
export function boardRequestHandler(
  routes: BoardRoutes,
): (request: IncomingMessage, response: ServerResponse) => Promise<void> {
  const { webRoot, runs, comparisons, loopback, warn } = routes;
  /** A run's or a comparison's file: one name directly in its directory, on the allow-list, inside it for real. */
  const outputFile = async (dir: string, rest: string, served: (name: string) => boolean) => {
    const segments = safeSegments(rest);
    if (segments.length !== 1 || !served(segments[0]!)) {
      throw new PathRefusedError(`refused ${JSON.stringify(rest)}: ${SERVED_FILES_NOTE}`);
    }
    return resolveInside(dir, segments[0]!);
  };

  const route = async (request: IncomingMessage, response: ServerResponse, path: string) => {
    const page = PAGES[path];
    if (page !== undefined) return sendFile(request, response, join(webRoot, page));
    if (path === '/api/events') return routes.openEvents(request, response);
    if (path === '/favicon.ico') return send(response, 204, '');
    if (path === '/api/runs') return send(response, 200, routes.runsJson(), CONTENT_TYPES['.json']);
    if (path.startsWith('/assets/'))
      return sendFile(request, response, await resolveInside(webRoot, path.slice('/assets/'.length)));
    const file = /^\/(runs|comparisons)\/(\d+)\/(.*)$/.exec(path);
    if (file) {
      const isRun = file[1] === 'runs';
      const owner = (isRun ? runs : comparisons)[Number(file[2])];
      if (owner === undefined) return send(response, 404, `no ${file[1]}/${file[2]} on this board`);
      const served = isRun ? isServedRunFile : isServedComparisonFile;
      return sendFile(request, response, await outputFile(owner.dir, file[3]!, served));
    }
    send(response, 404, `${path} is not a page of the board: open / or /finetune`);
  };

  const handle = async (request: IncomingMessage, response: ServerResponse) => {
    response.setHeader('cross-origin-opener-policy', 'same-origin');
    response.setHeader('cross-origin-embedder-policy', 'require-corp');
    response.setHeader('x-content-type-options', 'nosniff');
    if (loopback && !isLoopbackHostHeader(request.headers.host ?? '')) {
      // DNS rebinding: a web page elsewhere that points its own name at 127.0.0.1 would reach the board
      // with that name in Host. A board on loopback answers only to loopback names.
      return send(
        response,
        403,
        `refused Host ${JSON.stringify(request.headers.host ?? '')}: this board answers to loopback names (127.0.0.1, localhost, [::1])`,
      );
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      return send(response, 405, `${request.method} is not served: the board only reads`);
    }
    // The raw path, not a URL parser's normalised one: `..` must be seen to be refused.
    const path = (request.url ?? '/').split(/[?#]/)[0]!;
    try {
      await route(request, response, path);
    } catch (error) {
      if (response.headersSent) return void response.destroy();
      if (error instanceof PathRefusedError) return send(response, 403, error.message);
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'EISDIR' || code === 'ENOTDIR')
        return send(response, 404, `${path}: no such file`);
      if (code === 'ENOTREG') return send(response, 403, `refused ${path}: not a regular file`);
      if (code === 'EACCES' || code === 'EPERM') return send(response, 403, `${path}: permission denied`);
      warn(`badam-board: ${path}: ${(error as Error).message}`);
      send(response, 500, (error as Error).message);
    }
  };
  return handle;
}
