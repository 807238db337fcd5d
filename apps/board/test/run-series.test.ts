import { describe, expect, it } from 'vitest';
import { alignCurves, meanBand, spreadTies } from '../web/align-series.js';
import { runColor } from '../web/run-colors.js';
import { type LogLine, parseElapsed, RunSeries, smoothSeries } from '../web/run-series.js';
import { matchesFilter } from '../web/run-table.js';
import { fixtureLog, fixtureSwitches } from './fixture-runs.js';

describe('RunSeries', () => {
  it('reads the recorded BAdam run: training and eval lines, memory by kind, and the block timeline', () => {
    const series = new RunSeries();
    series.add(fixtureLog('block') as LogLine[]);
    expect(series.steps).toEqual(Array.from({ length: 30 }, (_, i) => 2 * (i + 1)));
    expect(series.evalSteps).toEqual([10, 20, 30, 40, 50, 60]);
    expect(series.memoryByKind.get('weights')).toHaveLength(30);
    expect(series.switches.map((s) => [s.step, s.from, s.to])).toEqual(fixtureSwitches());
    // K = 10 over 4 layers, ascending: 0, 1, 2, 3, 0, 1; the last switch (after step 60) leaves block 2 active.
    expect(series.timeline()).toEqual([
      { block: 0, first: 1, last: 10 },
      { block: 1, first: 11, last: 20 },
      { block: 2, first: 21, last: 30 },
      { block: 3, first: 31, last: 40 },
      { block: 0, first: 41, last: 50 },
      { block: 1, first: 51, last: 60 },
    ]);
    expect(series.activeBlock).toBe(2);
  });

  it('has no timeline for full Adam, and places switches between logged steps exactly', () => {
    const full = new RunSeries();
    full.add(fixtureLog('full') as LogLine[]);
    expect(full.timeline()).toEqual([]);
    const sparse = new RunSeries();
    sparse.add([
      { current_steps: 5, loss: 1, active_block: 1, block_switches: [{ step: 3, from: 0, to: 1 }] },
      { current_steps: 10, loss: 1, active_block: 1 },
    ]);
    expect(sparse.timeline()).toEqual([
      { block: 0, first: 1, last: 3 },
      { block: 1, first: 4, last: 10 },
    ]);
  });

  it('smooths as LLaMA-Factory does, and aligns runs logged at different steps', () => {
    expect(smoothSeries([1, 1, 1])).toEqual([1, 1, 1]);
    const s = smoothSeries([4, 0, 0, 0]);
    expect(s[0]).toBe(4);
    expect(s[3]).toBeGreaterThan(0);
    expect(s[3]).toBeLessThan(s[1]!);
    expect(
      alignCurves([
        { x: [1, 3], y: [10, 30] },
        { x: [2, 3], y: [20, 31] },
      ]),
    ).toEqual([
      [1, 2, 3],
      [10, null, 30],
      [null, 20, 31],
    ]);
  });

  it('skips what is not a log line and reads the rest; places steps on a wall-time axis', () => {
    const series = new RunSeries();
    series.add([
      { current_steps: 2, loss: 3, elapsed_time: '0:00:01', eval_accuracy: 0.5 },
      null as unknown as LogLine,
      { current_steps: '4' } as unknown as LogLine,
      {
        current_steps: 4,
        loss: 2,
        elapsed_time: '0:00:03',
        block_switches: [{ step: 3 }] as never,
        memory_by_kind: 7 as never,
      },
      { current_steps: 6, loss: 1, elapsed_time: '1 day, 0:00:05' },
    ]);
    expect(series.skipped).toBe(2);
    expect(series.steps).toEqual([2, 4, 6]);
    expect(series.switches).toEqual([]);
    expect(series.evalScores.get('eval_accuracy')).toEqual({ steps: [2], elapsed: [1], values: [0.5] });
    expect(series.secondsAt(3)).toBe(2);
    expect(parseElapsed('1 day, 0:00:05')).toBe(86_405);
    expect(parseElapsed('soon')).toBeUndefined();
    expect(spreadTies([1, 1, 2, null, 3, 3, 3])).toEqual([0.75, 1.25, 2, null, 2.5 + 1 / 6, 3, 3.5 - 1 / 6]);
  });

  it("smooths with the slider's weight, and draws a group's mean and band at the steps all its runs have", () => {
    expect(smoothSeries([4, 0], 0)).toEqual([4, 0]);
    const series = new RunSeries();
    series.add([
      { current_steps: 1, loss: 4 },
      { current_steps: 2, loss: 0 },
    ]);
    expect(series.smoothedLoss(0.5)).toEqual([4, 4 / 3]);
    expect(
      meanBand([
        { x: [1, 2, 3], y: [1, 2, 3] },
        { x: [2, 3], y: [4, 5] },
      ]),
    ).toEqual({ x: [2, 3], mean: [3, 4], low: [2, 3], high: [4, 5] });
  });

  it('gives runs colours that stay distinct past eight, and filters names by regular expression or text', () => {
    const colors = Array.from({ length: 30 }, (_, i) => runColor(i));
    expect(new Set(colors).size).toBe(30);
    const rgb = (c: string) => [1, 3, 5].map((i) => Number.parseInt(c.slice(i, i + 2), 16));
    let closest = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 20; i++) {
      for (let j = 0; j < i; j++)
        closest = Math.min(closest, Math.hypot(...rgb(colors[i]!).map((v, k) => v - rgb(colors[j]!)[k]!)));
    }
    expect(closest).toBeGreaterThan(25);
    expect(colors.every((c) => /^#[0-9a-f]{6}$/.test(c))).toBe(true);
    expect(matchesFilter('block/seed-1', '^block')).toBe(true);
    expect(matchesFilter('full/seed-1', '^block')).toBe(false);
    expect(matchesFilter('lr-(1e-3', '(1e')).toBe(true); // not a regular expression: plain text
  });
});
