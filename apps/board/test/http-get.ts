import { get, request } from 'node:http';

/**
 * A GET with the path sent exactly as given: fetch() and URL normalise `..` and `%2e%2e` away before the
 * request leaves, which would hide what the server does with them.
 */
export function rawGet(
  url: string,
  path: string,
  headers: Record<string, string> = {},
  method = 'GET',
): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  const { hostname, port } = new URL(url);
  return new Promise((done, fail) => {
    request({ host: hostname.replace(/^\[|\]$/g, ''), port, path, headers, method }, (response) => {
      let body = '';
      response.on('data', (chunk: Buffer) => {
        body += chunk.toString();
      });
      response.on('end', () => done({ status: response.statusCode ?? 0, body, headers: response.headers }));
    })
      .on('error', fail)
      .end();
  });
}

/** The events of a server-sent-events stream, parsed, until `close()`. */
export function eventStream(url: string): {
  events: Array<{ type: string; data: Record<string, unknown> }>;
  waitFor(
    test: (event: { type: string; data: Record<string, unknown> }) => boolean,
    timeoutMs: number,
  ): Promise<void>;
  close(): void;
} {
  const events: Array<{ type: string; data: Record<string, unknown> }> = [];
  const waiters = new Set<() => void>();
  let buffer = '';
  const request = get(url, (response) => {
    response.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      let end = buffer.indexOf('\n\n');
      while (end >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const type = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (type !== undefined && data !== undefined) events.push({ type, data: JSON.parse(data) });
        end = buffer.indexOf('\n\n');
      }
      for (const w of waiters) w();
    });
  });
  request.on('error', () => {});
  return {
    events,
    waitFor(test, timeoutMs) {
      return new Promise((done, fail) => {
        const check = () => {
          if (events.some(test)) {
            waiters.delete(check);
            clearTimeout(timer);
            done();
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          fail(
            new Error(
              `no matching event within ${timeoutMs} ms; got ${events.map((e) => e.type).join(', ')}`,
            ),
          );
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    close: () => request.destroy(),
  };
}
