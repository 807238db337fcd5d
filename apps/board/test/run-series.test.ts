import { describe, expect, it } from 'vitest';
import { alignCurves } from '../web/align-series.js';
import { type LogLine, RunSeries, smoothSeries } from '../web/run-series.js';
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
});
