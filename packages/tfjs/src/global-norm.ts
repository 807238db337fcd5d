import * as tf from '@tensorflow/tfjs-core';

/**
 * The sum of the squares of every entry of `tensors`: the squared global L2 norm a backend reports to core,
 * which decides on clipping (core's `GradientAccumulation`).
 */
export function sumOfSquares(tensors: Iterable<tf.Tensor>): number {
  const list = [...tensors];
  if (list.length === 0) return 0;
  return tf.tidy(() => tf.addN(list.map((t) => tf.sum(tf.square(t)))).dataSync()[0]!);
}

/** The L2 norm of all `tensors` taken as one vector. */
export function globalNorm(tensors: readonly tf.Tensor[]): number {
  return Math.sqrt(sumOfSquares(tensors));
}
