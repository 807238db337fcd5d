import { appendFileSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Board, LogTail, parseBoardArgs, startBoard } from '../src/index.js';
import { copyFixtureRuns, fixtureLog } from './fixture-runs.js';
import { eventStream, rawGet } from './http-get.js';

let runs: ReturnType<typeof copyFixtureRuns>;
let board: Board;

beforeAll(async () => {
  runs = copyFixtureRuns();
  // A file beside the runs that the board must never serve, and a link from inside a run to it.
  writeFileSync(join(runs.dir, '..', 'secret.txt'), 'not for the board');
  symlinkSync(join(runs.dir, '..', 'secret.txt'), join(runs.dir, 'block', 'link-out.txt'));
  symlinkSync(join(runs.dir, '..', 'secret.txt'), join(runs.dir, 'block', 'link-out.png'));
  board = await startBoard({ dirs: [runs.dir], port: 0, warn: () => {} });
});
afterAll(async () => {
  await board.close();
  runs.remove();
});

describe('badam-board server', () => {
  it('binds to loopback and finds the runs one level below a directory without a log', async () => {
    expect(board.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    const response = await fetch(`${board.url}api/runs`);
    expect(((await response.json()) as Array<{ name: string }>).map((r) => r.name)).toEqual([
      'block',
      'full',
    ]);
  });

  it('serves the pages, their bundles and the files inside a run', async () => {
    for (const path of [
      '/',
      '/finetune',
      '/assets/board-page.js',
      '/assets/wasm/tfjs-backend-wasm-simd.wasm',
    ]) {
      expect((await rawGet(board.url, path)).status, path).toBe(200);
    }
    const results = await rawGet(board.url, '/runs/0/all_results.json');
    expect(results.status).toBe(200);
    expect(JSON.parse(results.body)).toMatchObject({ finetuning_type: 'block' });
  });

  it.each([
    '/runs/0/../../secret.txt',
    '/runs/0/..%2f..%2fsecret.txt',
    '/runs/0/%2e%2e/%2e%2e/secret.txt',
    '/runs/0/%2E%2E%2F%2E%2E%2Fsecret.txt',
    '/runs/0/..%5c..%5csecret.txt',
    '/runs/0/link-out.txt',
    '/runs/0/link-out.png',
    '/runs/1/%2e%2e/block/..%2f..%2fsecret.txt',
    '/assets/../../package.json',
    '/assets/%2e%2e/%2e%2e/package.json',
    '/assets/..%2f..%2fsrc%2fcli.ts',
    '/runs/0/%00secret.txt',
  ])('refuses %s, which leads outside the given directories', async (path) => {
    const response = await rawGet(board.url, path);
    expect(response.status).toBe(403);
    expect(response.body).not.toContain('not for the board');
    expect(response.body).toMatch(/refused/);
  });

  it('answers only requests addressed to loopback (no DNS rebinding)', async () => {
    const { port } = new URL(board.url);
    expect((await rawGet(board.url, '/api/runs', { host: `localhost:${port}` })).status).toBe(200);
    const rebound = await rawGet(board.url, '/api/runs', { host: `attacker.example:${port}` });
    expect(rebound.status).toBe(403);
    expect(rebound.body).toMatch(/refused Host "attacker\.example/);
    expect(rebound.body).not.toContain('compare');
  });

  it('answers 404 for what does not exist and 405 for anything but reading', async () => {
    expect((await rawGet(board.url, '/runs/0/no_such_results.json')).status).toBe(404);
    expect((await rawGet(board.url, '/runs/7/all_results.json')).status).toBe(404);
    expect((await rawGet(board.url, '/runs/0/%252e%252e/secret.txt')).status).toBe(403); // not an output
    expect((await fetch(`${board.url}api/runs`, { method: 'POST' })).status).toBe(405);
  });

  it('streams the recorded lines, then each appended line, then a reset when the log is replaced', async () => {
    const stream = eventStream(`${board.url}api/events`);
    try {
      const recorded = fixtureLog('block').length;
      await stream.waitFor(
        (e) => e.type === 'lines' && e.data.run === 0 && (e.data.lines as unknown[]).length === recorded,
        5000,
      );
      expect(stream.events[0]).toMatchObject({ type: 'runs' });
      const log = join(runs.dir, 'block', 'trainer_log.jsonl');
      const started = Date.now();
      appendFileSync(log, `${JSON.stringify({ current_steps: 61, total_steps: 61, loss: 0.25 })}\n`);
      await stream.waitFor(
        (e) =>
          e.type === 'lines' && (e.data.lines as Array<{ current_steps: number }>)[0]?.current_steps === 61,
        1000,
      );
      expect(Date.now() - started).toBeLessThan(1000);
      // Half a line waits for its newline.
      appendFileSync(log, '{"current_steps":62,');
      appendFileSync(log, '"loss":0.2}\n');
      await stream.waitFor(
        (e) =>
          e.type === 'lines' && (e.data.lines as Array<{ current_steps: number }>)[0]?.current_steps === 62,
        1000,
      );
      // A fresh run writes its log anew (atomically: another file renamed over it).
      writeFileSync(`${log}.tmp`, `${JSON.stringify({ current_steps: 1, loss: 6 })}\n`);
      renameSync(`${log}.tmp`, log);
      await stream.waitFor(
        (e) => e.type === 'reset' && e.data.run === 0 && stream.events.indexOf(e) > 2,
        2000,
      );
      await stream.waitFor(
        (e) =>
          e.type === 'lines' &&
          e.data.run === 0 &&
          (e.data.lines as Array<{ current_steps: number }>)[0]?.current_steps === 1,
        2000,
      );
    } finally {
      stream.close();
    }
  });
});

describe('badam-board command line', () => {
  it('takes directories and a port, and says what is wrong with a bad one', () => {
    expect(parseBoardArgs(['a', 'b', '--port', '0'])).toMatchObject({
      dirs: ['a', 'b'],
      port: 0,
      host: '127.0.0.1',
    });
    expect(() => parseBoardArgs(['a', '--port', 'http'])).toThrow(
      /--port must be an integer from 0 to 65535/,
    );
    expect(() => parseBoardArgs([])).toThrow(/name at least one OUTPUT_DIR/);
  });

  it('refuses a directory that does not exist, naming it', async () => {
    await expect(startBoard({ dirs: ['/no/such/run'], port: 0 })).rejects.toThrow(
      /\/no\/such\/run is not a directory/,
    );
  });
});

describe('LogTail', () => {
  it('starts over when the log shrinks in place, and keeps a UTF-8 character split across reads whole', async () => {
    const dir = copyFixtureRuns();
    const path = join(dir.dir, 'block', 'trainer_log.jsonl');
    const seen: string[] = [];
    let resets = 0;
    const tail = new LogTail(path, { lines: (l) => seen.push(...l), reset: () => resets++ }, 60_000);
    try {
      await tail.start();
      expect(seen).toHaveLength(fixtureLog('block').length);
      const bytes = Buffer.from('{"current_steps":1,"note":"é"}\n');
      // Truncated in place (same file, shorter), ending inside "é".
      writeFileSync(path, bytes.subarray(0, bytes.length - 4));
      await tail.poke();
      appendFileSync(path, bytes.subarray(bytes.length - 4));
      await tail.poke();
      expect(resets).toBe(1);
      expect(seen.at(-1)).toBe('{"current_steps":1,"note":"é"}');
    } finally {
      tail.close();
      dir.remove();
    }
  });
});
