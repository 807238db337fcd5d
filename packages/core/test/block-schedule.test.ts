import { describe, expect, it } from 'vitest';
import { BadamStateError, BlockSchedule, type BlockScheduleOptions } from '../src/index.js';

/** The block trained at each of `steps` optimizer steps. */
function run(schedule: BlockSchedule, steps: number): number[] {
  const blocks: number[] = [];
  for (let i = 0; i < steps; i++) {
    blocks.push(schedule.currentBlock);
    schedule.advance();
  }
  return blocks;
}

/** Collapses runs of K equal entries: [a, a, b, b] with K = 2 -> [a, b]; checks every run has exactly K. */
function turns(blocks: number[], k: number): number[] {
  expect(blocks.length % k).toBe(0);
  const result: number[] = [];
  for (let i = 0; i < blocks.length; i += k) {
    const run = blocks.slice(i, i + k);
    expect(new Set(run).size).toBe(1);
    result.push(run[0]!);
  }
  return result;
}

describe('BlockSchedule', () => {
  it('ascending: 0..D-1, 0.., every block exactly K steps, the first included', () => {
    const blocks = run(
      new BlockSchedule({ blockCount: 4, switchMode: 'ascending', switchBlockEvery: 3 }),
      24,
    );
    expect(blocks.slice(0, 4)).toEqual([0, 0, 0, 1]);
    expect(turns(blocks, 3)).toEqual([0, 1, 2, 3, 0, 1, 2, 3]);
  });

  it('descending: D-1..0, D-1..', () => {
    const blocks = run(
      new BlockSchedule({ blockCount: 4, switchMode: 'descending', switchBlockEvery: 2 }),
      16,
    );
    expect(turns(blocks, 2)).toEqual([3, 2, 1, 0, 3, 2, 1, 0]);
  });

  it('startBlock is honoured by ascending and descending, which continue cyclically', () => {
    const up = run(
      new BlockSchedule({ blockCount: 5, switchMode: 'ascending', switchBlockEvery: 1, startBlock: 3 }),
      7,
    );
    expect(up).toEqual([3, 4, 0, 1, 2, 3, 4]);
    const down = run(
      new BlockSchedule({ blockCount: 5, switchMode: 'descending', switchBlockEvery: 1, startBlock: 1 }),
      7,
    );
    expect(down).toEqual([1, 0, 4, 3, 2, 1, 0]);
  });

  it('random: every block epoch is a permutation, epochs differ, and the seed reproduces the order', () => {
    const d = 8;
    const make = (seed: number) =>
      new BlockSchedule({ blockCount: d, switchMode: 'random', switchBlockEvery: 2, seed });
    const order = turns(run(make(7), 2 * d * 6), 2);
    const epochs = Array.from({ length: 6 }, (_, e) => order.slice(e * d, (e + 1) * d));
    for (const epoch of epochs) expect([...epoch].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(new Set(epochs.map((e) => e.join(','))).size).toBeGreaterThan(1);
    expect(turns(run(make(7), 2 * d * 6), 2)).toEqual(order);
    expect(turns(run(make(8), 2 * d * 6), 2)).not.toEqual(order);
  });

  it('random + startBlock starts there and the first epoch is still a permutation (the reference crashes here)', () => {
    for (let start = 0; start < 6; start++) {
      const schedule = new BlockSchedule({
        blockCount: 6,
        switchMode: 'random',
        switchBlockEvery: 1,
        startBlock: start,
        seed: 3,
      });
      const first = run(schedule, 6);
      expect(first[0]).toBe(start);
      expect([...first].sort()).toEqual([0, 1, 2, 3, 4, 5]);
    }
  });

  it('fixed stays on its block (startBlock, default 0)', () => {
    expect(
      new Set(
        run(
          new BlockSchedule({ blockCount: 4, switchMode: 'fixed', switchBlockEvery: 2, startBlock: 2 }),
          20,
        ),
      ),
    ).toEqual(new Set([2]));
    const fixed = new BlockSchedule({ blockCount: 4, switchMode: 'fixed', switchBlockEvery: 2 });
    expect(run(fixed, 5)).toEqual([0, 0, 0, 0, 0]);
    expect(fixed.advance().switched).toBe(false);
  });

  it('K = -1 never switches', () => {
    const schedule = new BlockSchedule({
      blockCount: 4,
      switchMode: 'ascending',
      switchBlockEvery: -1,
      startBlock: 1,
    });
    expect(new Set(run(schedule, 500))).toEqual(new Set([1]));
    expect(schedule.blockEpoch).toBe(0);
  });

  it('advance reports the switch after the K-th step', () => {
    const schedule = new BlockSchedule({ blockCount: 3, switchBlockEvery: 2 });
    expect(schedule.advance()).toEqual({ switched: false, restarted: false, from: 0, to: 0 });
    expect(schedule.advance()).toEqual({ switched: true, restarted: false, from: 0, to: 1 });
    expect(schedule.stepsInBlock).toBe(0);
  });

  it('fixed: every K steps a new sub-problem on the same block (restarted, not switched); K = -1 never', () => {
    const fixed = new BlockSchedule({
      blockCount: 3,
      switchMode: 'fixed',
      switchBlockEvery: 2,
      startBlock: 1,
    });
    const advances = Array.from({ length: 6 }, () => fixed.advance());
    expect(advances.map((a) => a.restarted)).toEqual([false, true, false, true, false, true]);
    expect(advances.every((a) => !a.switched && a.from === 1 && a.to === 1)).toBe(true);
    const never = new BlockSchedule({ blockCount: 3, switchMode: 'fixed', switchBlockEvery: -1 });
    expect(Array.from({ length: 50 }, () => never.advance()).some((a) => a.restarted || a.switched)).toBe(
      false,
    );
  });

  for (const switchMode of ['ascending', 'descending', 'random', 'fixed'] as const) {
    it(`${switchMode}: resuming from state() continues identically, through JSON`, () => {
      const options: BlockScheduleOptions = {
        blockCount: 5,
        switchMode,
        switchBlockEvery: 3,
        seed: 11,
        startBlock: 2,
      };
      const straight = run(new BlockSchedule(options), 100);
      const first = new BlockSchedule(options);
      const head = run(first, 37);
      const resumed = BlockSchedule.fromState(JSON.parse(JSON.stringify(first.state())));
      expect([...head, ...run(resumed, 63)]).toEqual(straight);
    });
  }

  it('rejects bad options with the option, the value and what is allowed', () => {
    expect(() => new BlockSchedule({ blockCount: 4, switchBlockEvery: 0 })).toThrow(
      'switchBlockEvery must be an integer >= 1, or -1 to never switch, got 0',
    );
    expect(() => new BlockSchedule({ blockCount: 4, switchBlockEvery: 2.5 })).toThrow(/switchBlockEvery/);
    expect(() => new BlockSchedule({ blockCount: 0 })).toThrow('blockCount must be an integer >= 1, got 0');
    expect(() => new BlockSchedule({ blockCount: 4, startBlock: 4 })).toThrow(
      'startBlock must be an integer >= 0 and <= 3, got 4',
    );
    expect(() => new BlockSchedule({ blockCount: 4, switchMode: 'shuffle' as 'random' })).toThrow(
      'switchMode must be one of "ascending", "descending", "random", "fixed", got "shuffle"',
    );
    expect(() => new BlockSchedule({ blockCount: 4, seed: -1 })).toThrow(/seed must be an integer >= 0/);
  });

  it('rejects corrupt saved state', () => {
    const state = new BlockSchedule({ blockCount: 4, switchMode: 'random' }).state();
    expect(() => BlockSchedule.fromState({ ...state, order: [0, 0, 1, 2] })).toThrow(BadamStateError);
    expect(() => BlockSchedule.fromState({ ...state, position: 9 })).toThrow(/position 9/);
    expect(() => BlockSchedule.fromState({ ...state, stepsInBlock: 50 })).toThrow(/stepsInBlock 50/);
    expect(() => BlockSchedule.fromState({ ...state, rng: [0, 0, 0, 0] })).toThrow(/random generator state/);
    expect(() => BlockSchedule.fromState({ ...state, version: 2 } as unknown as typeof state)).toThrow(
      /version 1/,
    );
  });
});
