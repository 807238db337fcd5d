import { describe, expect, it } from 'vitest';
import { createLrSchedule, learningRateAt, suggestSwitchBlockEvery } from '../src/index.js';

describe('learning-rate schedules (Hugging Face curves)', () => {
  it('constant with warmup', () => {
    const lr = createLrSchedule({ type: 'constant', learningRate: 1e-3, warmupSteps: 4 });
    expect([0, 1, 2, 3, 4, 100].map(lr)).toEqual([0, 2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3]);
  });

  it('linear: warmup then linear decay to 0 at totalSteps', () => {
    const lr = createLrSchedule({ type: 'linear', learningRate: 1, totalSteps: 12, warmupSteps: 2 });
    expect(lr(1)).toBe(0.5);
    expect(lr(2)).toBe(1);
    expect(lr(7)).toBe(0.5);
    expect(lr(12)).toBe(0);
    expect(lr(20)).toBe(0);
  });

  it('cosine: half a cosine from peak to floor', () => {
    const lr = createLrSchedule({
      type: 'cosine',
      learningRate: 2,
      totalSteps: 110,
      warmupSteps: 10,
      minLrRatio: 0.1,
    });
    expect(lr(10)).toBeCloseTo(2, 12);
    expect(lr(60)).toBeCloseTo(0.2 + 1.8 * 0.5, 12);
    expect(lr(110)).toBeCloseTo(0.2, 12);
    expect(lr(35)).toBeCloseTo(0.2 + 1.8 * 0.5 * (1 + Math.cos(Math.PI * 0.25)), 12);
  });

  it('warmupRatio rounds up like Hugging Face (ceil(ratio * total))', () => {
    expect(learningRateAt(3, { type: 'linear', learningRate: 1, totalSteps: 100, warmupRatio: 0.035 })).toBe(
      0.75,
    );
  });

  it('rejects bad options', () => {
    expect(() => createLrSchedule({ type: 'linear', learningRate: 1 })).toThrow(
      'totalSteps must be an integer >= 1 for the linear schedule, got undefined',
    );
    expect(() => createLrSchedule({ type: 'step' as 'linear', learningRate: 1 })).toThrow(
      /lrScheduleType must be one of/,
    );
    expect(() => createLrSchedule({ type: 'constant', learningRate: -1 })).toThrow(/learningRate must be/);
    expect(() => createLrSchedule({ type: 'constant', learningRate: 1 })(-1)).toThrow(
      /step must be an integer >= 0/,
    );
  });
});

describe('suggestSwitchBlockEvery', () => {
  it('min(max(round(n / (B * D)), 50), 100)', () => {
    expect(suggestSwitchBlockEvery({ examples: 52_002, effectiveBatchSize: 16, blocks: 32 })).toBe(100);
    expect(suggestSwitchBlockEvery({ examples: 999, effectiveBatchSize: 8, blocks: 32 })).toBe(50);
    expect(suggestSwitchBlockEvery({ examples: 20_000, effectiveBatchSize: 8, blocks: 32 })).toBe(78);
    expect(() => suggestSwitchBlockEvery({ examples: 10, effectiveBatchSize: 0, blocks: 2 })).toThrow(
      /effectiveBatchSize must be an integer >= 1, got 0/,
    );
  });
});
