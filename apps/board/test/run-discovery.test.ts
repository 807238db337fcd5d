import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { discoverRuns, findRuns, runNames, spawnBoard, startBoard } from '../src/index.js';
import { FIXTURE_RUNS, makeComparisonTree } from './fixture-runs.js';
import { eventStream } from './http-get.js';

const tree = makeComparisonTree();
afterAll(() => tree.remove());

describe('finding runs', () => {
  it("finds a comparison's runs at any depth, grouped by method with their seeds, and the comparison", async () => {
    const runs = await findRuns([tree.root]);
    expect(runs.map((r) => [r.name, r.group, r.seed, r.comparison])).toEqual([
      ['block/seed-1', 'block', 1, 0],
      ['block/seed-2', 'block', 2, 0],
      ['full/seed-1', 'full', 1, 0],
      ['full/seed-2', 'full', 2, 0],
    ]);
    const found = await discoverRuns([tree.root]);
    // The hidden run (.cache) and the link loop (compare/loop -> ..) are not entered.
    expect(found.comparisons).toEqual([tree.comparison]);
    expect(found.notes).toEqual([]);
  });

  it('stops at its bounds with a note, and follows no symbolic link', async () => {
    const deep = mkdtempSync(join(tmpdir(), 'badam-board-deep-'));
    try {
      let dir = deep;
      for (let i = 0; i < 7; i++) dir = join(dir, `level-${i}`);
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'trainer_log.jsonl'), '');
      symlinkSync(deep, join(deep, 'level-0', 'back'));
      const bounded = await discoverRuns([deep], { maxDepth: 4 });
      expect(bounded.runs).toEqual([deep]);
      expect(bounded.notes.join()).toMatch(/searched 4 levels below .* and stopped/);
      expect((await discoverRuns([deep], { maxDirectories: 5 })).notes.join()).toMatch(
        /searched 5 directories/,
      );
      expect((await discoverRuns([deep])).runs).toEqual([dir]);
    } finally {
      rmSync(deep, { recursive: true, force: true });
    }
  });

  it('names every run by one rule: the shortest unique end of its path, a seed with its method', () => {
    expect(runNames(['/o/compare/block', '/o/compare/full'])).toEqual(['block', 'full']);
    expect(runNames(['/o/a/block', '/o/b/block', '/o/c/full'])).toEqual(['a/block', 'b/block', 'full']);
    expect(runNames(['/o/c/block/seed-1'])).toEqual(['block/seed-1']);
    expect(runNames(['/o/x/block/seed-1', '/o/y/block/seed-1'])).toEqual([
      'x/block/seed-1',
      'y/block/seed-1',
    ]);
  });

  it("names a --board comparison's runs as they join, and tells the page about its comparison", async () => {
    const board = await startBoard({ dirs: [join(FIXTURE_RUNS, 'full')], port: 0, warn: () => {} });
    const stream = eventStream(`${board.url}api/events`);
    try {
      await board.addRun(join(tree.comparison, 'block', 'seed-1'));
      await board.addRun(join(tree.comparison, 'full', 'seed-1'));
      // The first run was `full`; a second `full/...` run does not change it: names grow only to stay unique.
      expect(board.runs.map((r) => r.name)).toEqual(['full', 'block/seed-1', 'full/seed-1']);
      expect(board.comparisons.map((c) => c.dir)).toEqual([tree.comparison]);
      await stream.waitFor(
        (e) =>
          e.type === 'comparison' &&
          typeof e.data.table === 'string' &&
          (e.data.images as unknown[]).length === 1,
        3000,
      );
    } finally {
      stream.close();
      await board.close();
    }
  });
});

describe("spawnBoard (the runners' --board) when its process ends", () => {
  it('tells the open pages that the training process ended, so they show a final state', async () => {
    const board = await spawnBoard([join(FIXTURE_RUNS, 'block')], { port: 0 });
    const stream = eventStream(`${board.url}api/events`);
    try {
      await stream.waitFor((e) => e.type === 'lines', 5000);
      board.close();
      await stream.waitFor(
        (e) => e.type === 'closed' && /training is over/.test(String(e.data.message)),
        5000,
      );
    } finally {
      stream.close();
    }
  });
});
