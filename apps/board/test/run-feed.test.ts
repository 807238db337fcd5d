import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { KeptLines, LogTail, logLineProblem, RunFeed, type RunFeedEvent } from '../src/index.js';
import { solidPng } from './png.js';

const root = mkdtempSync(join(tmpdir(), 'badam-board-feed-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let runs = 0;

/** A run directory with `log` in it, and a feed on it whose events are collected. */
async function feedOn(log: string, options: ConstructorParameters<typeof RunFeed>[1] = {}) {
  const dir = join(root, `run-${runs++}`);
  mkdirSync(dir);
  writeFileSync(join(dir, 'trainer_log.jsonl'), log);
  const events: RunFeedEvent[] = [];
  const feed = new RunFeed(
    { id: 0, name: 'run', dir },
    { warn: () => {}, safetyIntervalMs: 100, ...options },
  );
  await feed.start();
  feed.subscribe((e) => events.push(e));
  const until = async (test: (e: RunFeedEvent) => boolean, ms = 3000) => {
    const end = Date.now() + ms;
    while (!events.some(test)) {
      if (Date.now() > end)
        throw new Error(`no such event in ${ms} ms: ${events.map((e) => e.type).join(', ')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const steps = () =>
    events.flatMap((e) =>
      e.type === 'reset' ? [-1] : e.type === 'lines' ? e.lines.map((l) => l.current_steps) : [],
    );
  return { dir, feed, events, until, steps };
}

const line = (step: number, extra: Record<string, unknown> = {}) =>
  `${JSON.stringify({ current_steps: step, loss: 1 / step, ...extra })}\n`;

describe('RunFeed', () => {
  it('skips a null or wrongly shaped line with a note, and never the lines after it', async () => {
    const log = [
      line(1),
      'null\n',
      '[1, 2]\n',
      '{"current_steps": "3", "loss": 1}\n',
      '{"current_steps": 4, "loss": "high"}\n',
      '{"current_steps": 5, "block_switches": [{"step": 5}]}\n',
      'not json\n',
      line(7),
    ].join('');
    const { feed, events, steps } = await feedOn(log);
    try {
      expect(steps()).toEqual([-1, 1, 7]);
      const notes = events.flatMap((e) => (e.type === 'note' ? [e.message] : []));
      expect(notes).toEqual([
        'trainer_log.jsonl line 2: null is not an object with current_steps; skipped',
        'trainer_log.jsonl line 3: [1,2] is not an object with current_steps; skipped',
        'trainer_log.jsonl line 4: current_steps is "3", expected a number; skipped',
        'trainer_log.jsonl line 5: loss is "high", expected a number or null; skipped',
        'trainer_log.jsonl line 6: block_switches is [{"step":5}], expected a list of {step, from, to} numbers; skipped',
        'trainer_log.jsonl line 7 is not JSON: skipped',
      ]);
    } finally {
      feed.close();
    }
  });

  it('sends a burst of lines (a log growing by hundreds of MB) as a sample, keeping every switch and eval', async () => {
    const { dir, feed, events, until } = await feedOn(line(1), { keptLines: 500, burstLines: 300 });
    try {
      const burst: string[] = [];
      for (let step = 2; step <= 20_001; step++) {
        burst.push(
          line(step, {
            ...(step % 1000 === 0 ? { block_switches: [{ step, from: 0, to: 1 }] } : {}),
            ...(step % 2500 === 0 ? { eval_loss: 0.5 } : {}),
          }),
        );
      }
      const before = events.length;
      appendFileSync(join(dir, 'trainer_log.jsonl'), burst.join(''));
      await until((e) => e.type === 'lines' && e.lines.at(-1)?.current_steps === 20_001, 10_000);
      const after = events.slice(before);
      // No more than a burst's worth of lines went out one by one; then a reset and the sample.
      const sent = after.flatMap(
        (e): Array<number | string> => (e.type === 'lines' ? [e.lines.length] : [e.type]),
      );
      const reset = sent.indexOf('reset');
      expect(reset).toBeGreaterThan(-1);
      expect((sent.slice(0, reset) as number[]).reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(300);
      const sample = after
        .slice(after.findIndex((e) => e.type === 'reset'))
        .flatMap((e) => (e.type === 'lines' ? e.lines : []));
      expect(sample.length).toBeLessThanOrEqual(500 + 20 + 8 + 1);
      expect(sample.filter((l) => Array.isArray(l.block_switches)).map((l) => l.current_steps)).toEqual(
        Array.from({ length: 20 }, (_, i) => 1000 * (i + 1)),
      );
      expect(sample.filter((l) => l.eval_loss === 0.5)).toHaveLength(8);
      expect(sample[0]!.current_steps).toBe(1);
      expect(sample.at(-1)!.current_steps).toBe(20_001);
    } finally {
      feed.close();
    }
  });

  it('reads a run directory again after it is deleted and made anew', async () => {
    const { dir, feed, until, steps } = await feedOn(line(1) + line(2));
    try {
      rmSync(dir, { recursive: true, force: true });
      await new Promise((r) => setTimeout(r, 250));
      mkdirSync(dir);
      // The new log is longer than the old one: an offset kept from before would skip its start.
      writeFileSync(join(dir, 'trainer_log.jsonl'), line(10) + line(11) + line(12));
      await until((e) => e.type === 'lines' && e.lines.some((l) => l.current_steps === 12));
      expect(steps()).toEqual([-1, 1, 2, -1, 10, 11, 12]);
      writeFileSync(join(dir, 'all_results.json'), '{"train_loss": 0.5}');
      writeFileSync(join(dir, 'training_loss.png'), solidPng(2, 2, [0, 0, 0]));
      await until(
        (e) =>
          e.type === 'results' &&
          (e.results['all_results.json'] as { train_loss?: number })?.train_loss === 0.5,
      );
      await until((e) => e.type === 'images' && e.images.some((i) => i.name === 'training_loss.png'));
    } finally {
      feed.close();
    }
  });
});

describe('LogTail', () => {
  it('reads a large log a chunk at a time, and skips a line too long to be a log line', async () => {
    const dir = join(root, 'tail');
    mkdirSync(dir);
    const path = join(dir, 'trainer_log.jsonl');
    writeFileSync(path, `${line(1)}${'x'.repeat(5000)}\n${line(2)}${line(3)}`);
    const seen: string[] = [];
    const problems: string[] = [];
    let calls = 0;
    const tail = new LogTail(
      path,
      {
        lines: (l) => {
          calls++;
          seen.push(...l);
        },
        reset: () => {},
        problem: (m) => problems.push(m),
      },
      { chunkBytes: 64, maxLineBytes: 1000, safetyIntervalMs: 60_000 },
    );
    try {
      await tail.start();
      expect(seen.map((l) => JSON.parse(l).current_steps)).toEqual([1, 2, 3]);
      expect(calls).toBeGreaterThan(1);
      expect(problems).toEqual([`${path}: skipped a line longer than 1000 bytes (not a log line)`]);
    } finally {
      tail.close();
    }
  });
});

describe('KeptLines and logLineProblem', () => {
  it('keeps at most the limit of training lines, every evaluation and switch, and the latest line', () => {
    const kept = new KeptLines(100);
    kept.add(
      Array.from({ length: 1000 }, (_, i) => ({
        current_steps: i,
        ...(i % 100 === 7 ? { eval_loss: 1 } : {}),
      })),
    );
    const lines = kept.lines();
    expect(lines.length).toBeLessThanOrEqual(100 + 10 + 1);
    expect(lines.filter((l) => l.eval_loss === 1)).toHaveLength(10);
    expect(lines.at(-1)!.current_steps).toBe(999);
    expect(kept.every).toBeGreaterThan(1);
    expect(logLineProblem({ current_steps: 1, loss: null, memory_by_kind: { weights: 1 } })).toBeUndefined();
  });
});
