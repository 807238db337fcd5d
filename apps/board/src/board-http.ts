import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { openRegularFile } from './regular-file.js';

/** Content types of what the board serves. */
export const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.jsonl': 'text/plain; charset=utf-8',
  '.md': 'text/plain; charset=utf-8',
  '.wasm': 'application/wasm',
  '.png': 'image/png',
  '.txt': 'text/plain; charset=utf-8',
};

/** Answers with a short text (or `type`) body. */
export function send(
  response: ServerResponse,
  status: number,
  body: string,
  type = 'text/plain; charset=utf-8',
): void {
  response.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  response.end(body);
}

/**
 * Streams a regular file (a named pipe or device is refused by {@link openRegularFile}), so a log of
 * hundreds of MB is never held whole; HEAD gets the headers only. Rejects before anything is sent when the
 * file cannot be opened; a failure while streaming (the client left, the file vanished) ends the response.
 */
export async function sendFile(
  request: IncomingMessage,
  response: ServerResponse,
  path: string,
): Promise<void> {
  const { handle, size } = await openRegularFile(path);
  response.writeHead(200, {
    'content-type': CONTENT_TYPES[extname(path)] ?? 'application/octet-stream',
    'content-length': size,
    'cache-control': 'no-cache',
  });
  if (request.method === 'HEAD' || size === 0) {
    await handle.close();
    response.end();
    return;
  }
  // The length said when opened: a log still growing is sent up to there, not past it.
  try {
    await pipeline(handle.createReadStream({ start: 0, end: size - 1, autoClose: true }), response);
  } catch {
    response.destroy();
  } finally {
    await handle.close().catch(() => {});
  }
}
