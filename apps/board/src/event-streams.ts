import type { IncomingMessage, ServerResponse } from 'node:http';

/** Something a stream can follow: it sends what it knows at once, then its changes, until unsubscribed. */
export interface StreamSource<E> {
  subscribe(listener: (event: E) => void): () => void;
}

/**
 * The board's open server-sent-event streams (`/api/events`): each gets the first event, then everything
 * its sources send, and a keep-alive comment every 15 s; sources added later are followed by every open
 * stream; `end` sends a last event to each and closes them.
 */
export class EventStreams<E extends { readonly type: string }> {
  private readonly streams = new Map<
    ServerResponse,
    { write: (event: E) => void; unsubscribe: Array<() => void> }
  >();

  constructor(
    private readonly first: () => E,
    private readonly sources: () => ReadonlyArray<StreamSource<E>>,
  ) {}

  /** Answers a request for the stream (HEAD gets the headers only). */
  open(request: IncomingMessage, response: ServerResponse): void {
    response.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
    });
    if (request.method === 'HEAD') {
      response.end();
      return;
    }
    const write = (event: E) => response.write(`event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
    write(this.first());
    const unsubscribe = this.sources().map((source) => source.subscribe(write));
    this.streams.set(response, { write, unsubscribe });
    // A comment every 15 s keeps proxies and idle timeouts from closing a quiet stream.
    const keepAlive = setInterval(() => response.write(': keep-alive\n\n'), 15_000);
    request.on('close', () => {
      clearInterval(keepAlive);
      for (const u of this.streams.get(response)?.unsubscribe ?? []) u();
      this.streams.delete(response);
    });
  }

  /** Sends `event` to every open stream. */
  broadcast(event: E): void {
    for (const { write } of this.streams.values()) write(event);
  }

  /** Every open stream follows `source` too (streams opened later do through `sources`). */
  follow(source: StreamSource<E>): void {
    for (const stream of this.streams.values()) stream.unsubscribe.push(source.subscribe(stream.write));
  }

  /** Sends `last` to every open stream and ends them. */
  end(last: E): void {
    for (const [response, { write, unsubscribe }] of this.streams) {
      for (const u of unsubscribe) u();
      write(last);
      response.end();
    }
    this.streams.clear();
  }
}
