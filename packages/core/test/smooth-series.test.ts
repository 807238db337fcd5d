import { describe, expect, it } from 'vitest';
import { smoothingWeight, smoothSeries } from '../src/index.js';

/** Point i of a debiased EMA by its definition: the mean of points 0..i weighted by weight^(i-j). */
function weightedMeans(values: readonly number[], weight: number): number[] {
  return values.map((_, i) => {
    let sum = 0;
    let total = 0;
    for (let j = 0; j <= i; j++) {
      sum += weight ** (i - j) * values[j]!;
      total += weight ** (i - j);
    }
    return sum / total;
  });
}

describe('smoothSeries', () => {
  it("uses LLaMA-Factory's weight for the curve's length", () => {
    expect(smoothingWeight(40)).toBeCloseTo(1.8 * (1 / (1 + Math.exp(-2)) - 0.5), 12);
    expect(smoothingWeight(1000)).toBeLessThanOrEqual(0.9);
  });

  it('is the weighted mean of the points so far: the first point is the first value', () => {
    const falling = [6.5, 3, 1.5, 1, 0.85, 0.8, 0.78, 0.75, 0.74, 0.73];
    const weight = smoothingWeight(40);
    const smoothed = smoothSeries(falling, weight);
    const expected = weightedMeans(falling, weight);
    smoothed.forEach((v, i) => expect(v).toBeCloseTo(expected[i]!, 12));
    expect(smoothed[0]).toBe(6.5);
    // Started from the first value instead (LLaMA-Factory), the fifth point read 2.44 where the loss was 0.85.
    expect(smoothed[4]).toBeLessThan(1.8);
    expect(smoothSeries([1, 1, 1])).toEqual([1, 1, 1]);
    expect(smoothSeries([2, 4], 0)).toEqual([2, 4]);
  });

  it('passes non-finite values through and refuses a weight outside [0, 1)', () => {
    const s = smoothSeries([2, Number.NaN, 2], 0.5);
    expect(s[0]).toBe(2);
    expect(s[1]).toBeNaN();
    expect(s[2]).toBeCloseTo(2, 12);
    expect(() => smoothSeries([1], 1)).toThrow(/smoothing weight 1: expected a number from 0/);
    expect(() => smoothSeries([1], -0.1)).toThrow(RangeError);
  });
});
