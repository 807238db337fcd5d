import { describe, expect, it } from 'vitest';
import {
  adamwUpdate,
  resolveAdamWConfig,
  roundToBfloat16,
  roundToDType,
  roundToFloat16,
  SeededRandom,
} from '../src/index.js';

describe('roundToBfloat16', () => {
  it('rounds to nearest, ties to even', () => {
    expect(roundToBfloat16(1)).toBe(1);
    expect(roundToBfloat16(1 + 2 ** -8)).toBe(1); // half an ulp above an even mantissa: down
    expect(roundToBfloat16(1 + 3 * 2 ** -8)).toBe(1 + 2 ** -6); // half an ulp above an odd mantissa: up
    expect(roundToBfloat16(1 + 2 ** -8 + 2 ** -20)).toBe(1 + 2 ** -7);
    expect(roundToBfloat16(-3.15)).toBe(-3.15625);
    expect(roundToBfloat16(3.4e38)).toBe(Number.POSITIVE_INFINITY);
    expect(roundToBfloat16(Number.NaN)).toBeNaN();
  });
});

describe('roundToFloat16', () => {
  it('rounds to nearest, ties to even, with subnormals and overflow', () => {
    expect(roundToFloat16(0.1)).toBe(0.0999755859375);
    expect(roundToFloat16(1 + 2 ** -11)).toBe(1);
    expect(roundToFloat16(1 + 3 * 2 ** -11)).toBe(1 + 2 ** -9);
    expect(roundToFloat16(65504)).toBe(65504);
    expect(roundToFloat16(65519)).toBe(65504);
    expect(roundToFloat16(65520)).toBe(Number.POSITIVE_INFINITY);
    expect(roundToFloat16(2 ** -24)).toBe(2 ** -24);
    expect(roundToFloat16(2 ** -25)).toBe(0);
    expect(roundToFloat16(3 * 2 ** -25)).toBe(2 ** -23);
    expect(roundToFloat16(-2.5)).toBe(-2.5);
  });

  it('roundToDType leaves float32 alone', () => {
    const values = Float32Array.of(0.1, 1 / 3);
    expect(roundToDType(Float32Array.from(values), 'float32')).toEqual(values);
    expect(roundToDType(Float32Array.from(values), 'bfloat16')[0]).toBe(roundToBfloat16(0.1));
  });
});

describe('adamwUpdate', () => {
  it('matches torch.optim.AdamW worked by hand over two steps', () => {
    const config = resolveAdamWConfig({ weightDecay: 0.01 });
    const p = Float32Array.of(1);
    const m = new Float32Array(1);
    const v = new Float32Array(1);
    adamwUpdate(p, Float32Array.of(0.5), m, v, config, { lr: 0.1, step: 1, gradientScale: 1, decay: true });
    // Step 1: decay to 0.999, then the bias-corrected step is lr * sign(g) (up to eps).
    expect(p[0]).toBeCloseTo(0.999 - 0.1, 6);
    adamwUpdate(p, Float32Array.of(-2), m, v, config, { lr: 0.1, step: 2, gradientScale: 0.5, decay: true });
    const m2 = 0.9 * 0.05 + 0.1 * -1;
    const v2 = 0.999 * 0.00025 + 0.001 * 1;
    const denom = Math.sqrt(v2) / Math.sqrt(1 - 0.999 ** 2) + 1e-8;
    expect(m[0]).toBeCloseTo(m2, 7);
    expect(v[0]).toBeCloseTo(v2, 9);
    expect(p[0]).toBeCloseTo(0.899 * 0.999 - (0.1 / (1 - 0.81)) * (m2 / denom), 6);
  });

  it('skips weight decay when decay is false', () => {
    const p = Float32Array.of(2);
    adamwUpdate(
      p,
      Float32Array.of(0),
      new Float32Array(1),
      new Float32Array(1),
      resolveAdamWConfig({ weightDecay: 1 }),
      {
        lr: 0.1,
        step: 1,
        gradientScale: 1,
        decay: false,
      },
    );
    expect(p[0]).toBe(2);
  });
});

describe('SeededRandom', () => {
  it('is reproducible, resumable from state(), and uniform enough', () => {
    const a = SeededRandom.fromSeed(123);
    const b = SeededRandom.fromSeed(123);
    const first = Array.from({ length: 5 }, () => a.nextUint32());
    expect(Array.from({ length: 5 }, () => b.nextUint32())).toEqual(first);
    const resumed = SeededRandom.fromState(JSON.parse(JSON.stringify(a.state())));
    expect(resumed.nextUint32()).toBe(a.nextUint32());
    expect(SeededRandom.fromSeed(124).nextUint32()).not.toBe(first[0]);
    const counts = new Array(10).fill(0);
    for (let i = 0; i < 20_000; i++) counts[a.nextInt(10)] += 1;
    for (const c of counts) expect(Math.abs(c - 2000)).toBeLessThan(200);
    expect(a.permutation(7).sort()).toEqual([0, 1, 2, 3, 4, 5, 6]);
  });

  it('draws the very sequence it always drew (saved schedules, scatter masks and initial weights depend on it)', () => {
    const r = SeededRandom.fromSeed(42);
    expect(Array.from({ length: 4 }, () => r.nextUint32())).toEqual([
      1580552567, 3148757609, 3570626032, 2957818036,
    ]);
    expect(r.state()).toEqual([3727154472, 3799119342, 3144147166, 1150489491]);
    const q = SeededRandom.fromSeed(0);
    for (let i = 0; i < 99_999; i++) q.nextUint32();
    expect(q.nextUint32()).toBe(1462028089);
  });

  it('seeds beyond 32 bits give distinct streams; bad seeds are rejected', () => {
    expect(SeededRandom.fromSeed(2 ** 32 + 5).nextUint32()).not.toBe(SeededRandom.fromSeed(5).nextUint32());
    expect(() => SeededRandom.fromSeed(1.5)).toThrow('seed must be a non-negative integer, got 1.5');
  });
});
