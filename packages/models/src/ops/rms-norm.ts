import * as tf from '@tensorflow/tfjs-core';

/** RMSNorm over the last axis: `x / sqrt(mean(x^2) + eps) * weight`. */
export function rmsNorm(x: tf.Tensor, weight: tf.Tensor, eps: number): tf.Tensor {
  return tf.tidy(() => tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), eps))), weight));
}
