import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { spawnBoard } from '../src/index.js';
import { FIXTURE_RUNS } from './fixture-runs.js';
import { eventStream } from './http-get.js';

const dir = mkdtempSync(join(tmpdir(), 'badam-board-spawn-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('badam-board on the command line', () => {
  const cli = fileURLToPath(new URL('../dist/src/cli.js', import.meta.url));
  it('-h prints the help and --version the version, each exiting 0', () => {
    const help = spawnSync(process.execPath, [cli, '-h'], { encoding: 'utf8' });
    expect(help.status, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/^Usage: badam-board OUTPUT_DIR\.\.\./);
    const version = spawnSync(process.execPath, [cli, '--version'], { encoding: 'utf8' });
    expect(version.status, version.stderr).toBe(0);
    expect(version.stdout.trim()).toMatch(/^badam-board \d+\.\d+\.\d+/);
  });
});

describe("spawnBoard (the runners' --board)", () => {
  it('starts badam-board in a child process, adds a run before its log exists, and follows it', async () => {
    const board = await spawnBoard([join(FIXTURE_RUNS, 'full')], { port: 0 });
    try {
      expect(board.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
      const stream = eventStream(`${board.url}api/events`);
      try {
        await stream.waitFor((e) => e.type === 'runs', 5000);
        board.watch(dir);
        await stream.waitFor((e) => e.type === 'runs' && (e.data.runs as unknown[]).length === 2, 5000);
        writeFileSync(join(dir, 'trainer_log.jsonl'), `${JSON.stringify({ current_steps: 1, loss: 3 })}\n`);
        await stream.waitFor((e) => e.type === 'lines' && e.data.run === 1, 2000);
      } finally {
        stream.close();
      }
    } finally {
      board.close();
    }
    const exited = await new Promise<boolean>((done) => {
      if (board.process.exitCode !== null || board.process.signalCode !== null) return done(true);
      board.process.once('exit', () => done(true));
      setTimeout(() => done(false), 5000);
    });
    expect(exited).toBe(true);
  });
});
