/**
 * LLaMA-Factory's smoothing weight for a curve of `length` points: `1.8 * (sigmoid(0.05 n) - 0.5)`, so short
 * curves are barely smoothed (10 points: 0.22) and long ones a lot (100 points: 0.89, at most 0.9).
 */
export function smoothingWeight(length: number): number {
  return 1.8 * (1 / (1 + Math.exp(-0.05 * length)) - 0.5);
}

/**
 * An exponential moving average of a curve, debiased as TensorBoard's smoothing is: the average starts
 * from 0 and each point is divided by `1 - weight^(i+1)`, the share of the weights its points have had
 * so far. Point i is then the weighted mean of points 0..i with weights `weight^(i-j)`, so the first
 * point is the first value and the start does not drag the first value along. (LLaMA-Factory starts the
 * average at the first value instead: with a loss falling from 6.5 it still read 2.3 at the fifth of 40
 * points, where the loss was 0.85.) Non-finite values are skipped: they come out as they are and leave the
 * average unchanged.
 *
 * @param values the curve, in order
 * @param weight the smoothing, from 0 (none) to below 1; default {@link smoothingWeight} of the length,
 *   LLaMA-Factory's choice, which training_loss.png and badam-board use
 *
 * @example
 * ```ts
 * import { smoothSeries } from '@badam/core';
 * smoothSeries([4, 0, 0, 0], 0.5); // [4, 1.33..., 0.57..., 0.26...]
 * ```
 */
export function smoothSeries(values: readonly number[], weight = smoothingWeight(values.length)): number[] {
  if (!(weight >= 0 && weight < 1)) {
    throw new RangeError(`smoothing weight ${weight}: expected a number from 0 up to (not including) 1`);
  }
  let average = 0;
  let share = 0;
  return values.map((value) => {
    if (!Number.isFinite(value)) return value;
    average = average * weight + (1 - weight) * value;
    share = share * weight + (1 - weight);
    return average / share;
  });
}
