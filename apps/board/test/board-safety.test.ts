import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Board,
  isLoopbackHost,
  isLoopbackHostHeader,
  runBoardCommand,
  startBoard,
} from '../src/index.js';
import { type ComparisonTree, makeComparisonTree, scaledLog } from './fixture-runs.js';
import { eventStream, rawGet } from './http-get.js';

const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'src', 'cli.js');
const quiet = () => {};

/** Runs the built badam-board; resolves with its address once it listens. */
function startCli(args: string[], options: { uid?: number; gid?: number } = {}) {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['pipe', 'pipe', 'pipe'], ...options });
  let output = '';
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  const url = new Promise<string>((done, fail) => {
    const take = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /badam-board: (http:\/\/\S+\/) /.exec(output);
      if (match) done(match[1]!);
    };
    child.stdout!.on('data', take);
    child.stderr!.on('data', take);
    void exited.then((code) => fail(new Error(`badam-board exited with ${code}: ${output}`)));
  });
  url.catch(quiet);
  return { child, url, exited, output: () => output };
}

function stop(child: ChildProcess): void {
  if (child.exitCode === null && child.signalCode === null) child.kill();
}

describe('what badam-board serves: training outputs only', () => {
  let tree: ComparisonTree;
  let board: Board;
  beforeAll(async () => {
    tree = makeComparisonTree();
    board = await startBoard({ dirs: [tree.root], port: 0, warn: quiet });
  });
  afterAll(async () => {
    await board?.close();
    tree?.remove();
  });

  it("serves a run's log, results and images, and a comparison's table and plot", async () => {
    for (const path of [
      '/runs/0/trainer_log.jsonl',
      '/runs/0/all_results.json',
      '/runs/0/training_loss.png',
      '/comparisons/0/compare_table.md',
      '/comparisons/0/compare_results.json',
      '/comparisons/0/compare_loss.png',
    ]) {
      expect((await rawGet(board.url, path)).status, path).toBe(200);
    }
  });

  it.each([
    '/runs/0/model.safetensors',
    '/runs/0/../../../../.git/config',
    '/runs/0/%2e%2e/%2e%2e/%2e%2e/%2e%2e/.git/config',
    '/runs/0/..%2f..%2f..%2f..%2fsecret.txt',
    '/comparisons/0/../../secret.txt',
    '/comparisons/0/loop/secret.txt',
    '/comparisons/0/block/seed-1/model.safetensors',
    '/runs/0/.git/config',
  ])('a repository root does not serve %s', async (path) => {
    const response = await rawGet(board.url, path);
    expect(response.status).toBe(403);
    expect(response.body).not.toContain(tree.secret);
  });

  it('`badam-board /` serves no system file', async () => {
    const root = await startBoard({ dirs: ['/'], port: 0, warn: quiet, limits: { maxDirectories: 200 } });
    try {
      const paths = root.runs.flatMap((_, id) => [
        `/runs/${id}/etc/passwd`,
        `/runs/${id}/passwd`,
        `/runs/${id}/../../../../../../etc/passwd`,
        `/runs/${id}/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd`,
      ]);
      for (const path of ['/etc/passwd', '/assets/../../../../etc/passwd', ...paths]) {
        const response = await rawGet(root.url, path);
        expect(response.status, path).toBeGreaterThanOrEqual(400);
        expect(response.body, path).not.toMatch(/root:.*:0:0:/);
      }
    } finally {
      await root.close();
    }
  });
});

describe('badam-board on bad input', () => {
  const dir = mkdtempSync(join(tmpdir(), 'badam-board-safety-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('refuses a named pipe at once instead of hanging on it, as a log and as an image', async () => {
    const run = join(dir, 'pipes');
    execFileSync('mkdir', ['-p', run]);
    execFileSync('mkfifo', [join(run, 'trainer_log.jsonl'), join(run, 'training_loss.png')]);
    const board = await startBoard({ dirs: [run], port: 0, warn: quiet });
    const stream = eventStream(`${board.url}api/events`);
    try {
      const image = await rawGet(board.url, '/runs/0/training_loss.png');
      expect(image.status).toBe(403);
      expect(image.body).toMatch(/not a regular file/);
      expect((await rawGet(board.url, '/runs/0/trainer_log.jsonl')).status).toBe(403);
      await stream.waitFor(
        (e) => e.type === 'note' && /not a regular file/.test(String(e.data.message)),
        3000,
      );
    } finally {
      stream.close();
      await board.close();
    }
  });

  it('answers HEAD on every path, the event stream included, without a body', async () => {
    const board = await startBoard({ dirs: [dir], port: 0, warn: quiet });
    try {
      const events = await rawGet(board.url, '/api/events', {}, 'HEAD');
      expect(events.status).toBe(200);
      expect(events.headers['content-type']).toMatch(/text\/event-stream/);
      expect(events.body).toBe('');
      expect((await rawGet(board.url, '/', {}, 'HEAD')).status).toBe(200);
    } finally {
      await board.close();
    }
  });

  it('exits with a message on a busy port instead of hanging, also as the runners start it', async () => {
    const busy = createServer();
    await new Promise<void>((done) => busy.listen(0, '127.0.0.1', done));
    const { port } = busy.address() as { port: number };
    try {
      for (const args of [
        [dir, '--port', String(port)],
        ['--stdin', '--port', String(port)],
      ]) {
        const cli = startCli(args);
        const code = await Promise.race([
          cli.exited,
          new Promise((done) => setTimeout(() => done('hung'), 10_000)),
        ]);
        stop(cli.child);
        expect(code, cli.output()).toBe(1);
        expect(cli.output()).toMatch(
          new RegExp(`port ${port} is in use: pass --port <another>, or --port 0`),
        );
      }
    } finally {
      busy.close();
    }
  });

  it('takes any 127.0.0.0/8 address, ::1 and localhost as loopback: no warning, and the Host check stays on', async () => {
    for (const host of [
      '127.0.0.1',
      '127.0.0.2',
      '127.1.2.3',
      'localhost',
      '::1',
      '[::1]',
      '::ffff:127.0.0.9',
    ]) {
      expect(isLoopbackHost(host), host).toBe(true);
    }
    for (const host of ['0.0.0.0', '10.0.0.1', '128.0.0.1', '::', 'example.com', '127.0.0.1.example.com']) {
      expect(isLoopbackHost(host), host).toBe(false);
    }
    expect(isLoopbackHostHeader('127.0.0.2:6007')).toBe(true);
    expect(isLoopbackHostHeader('[::1]:6007')).toBe(true);
    expect(isLoopbackHostHeader('attacker.example:6007')).toBe(false);
    const warnings: string[] = [];
    const board = await runBoardCommand([dir, '--host', '127.0.0.2', '--port', '0'], {
      log: quiet,
      warn: (m) => warnings.push(m),
    });
    try {
      expect(board!.url).toMatch(/^http:\/\/127\.0\.0\.2:\d+\/$/);
      expect(warnings.filter((w) => /other machines/.test(w))).toEqual([]);
      const { port } = new URL(board!.url);
      expect((await rawGet(board!.url, '/api/runs', { host: `127.0.0.2:${port}` })).status).toBe(200);
      expect((await rawGet(board!.url, '/api/runs', { host: `attacker.example:${port}` })).status).toBe(403);
    } finally {
      await board!.close();
    }
  });

  it('does not crash on a log it may not read, and reads it once it may', async () => {
    // As root every file is readable: the board runs as nobody then, as a user's board would, if nobody
    // may read the built board (a checkout under a private directory may not allow it).
    const root = process.getuid?.() === 0;
    const nobody = { uid: 65534, gid: 65534 };
    const nobodyReads =
      root &&
      spawnSync(process.execPath, ['-e', `require('fs').readFileSync(${JSON.stringify(CLI)})`], nobody)
        .status === 0;
    const run = mkdtempSync(join(tmpdir(), 'badam-board-eacces-'));
    chmodSync(run, 0o755);
    const log = join(run, 'trainer_log.jsonl');
    if (root && !nobodyReads) {
      // Then another read error, which root meets too: a log that is a symbolic link to itself (ELOOP).
      symlinkSync(log, log);
    } else {
      writeFileSync(log, scaledLog('block', 1));
      chmodSync(log, 0o000);
    }
    const cli = startCli([run, '--port', '0'], nobodyReads ? nobody : {});
    try {
      const url = await cli.url;
      const stream = eventStream(`${url}api/events`);
      try {
        await stream.waitFor(
          (e) =>
            e.type === 'note' &&
            /permission denied|too many (symbolic )?links|ELOOP/i.test(String(e.data.message)),
          5000,
        );
        expect((await rawGet(url, '/runs/0/trainer_log.jsonl')).status).toBeGreaterThanOrEqual(400);
        rmSync(log, { force: true });
        writeFileSync(log, scaledLog('block', 1));
        chmodSync(log, 0o644);
        await stream.waitFor((e) => e.type === 'lines' && (e.data.lines as unknown[]).length > 0, 5000);
      } finally {
        stream.close();
      }
      expect(cli.child.exitCode).toBeNull();
    } finally {
      stop(cli.child);
      rmSync(run, { recursive: true, force: true });
    }
  });
});
