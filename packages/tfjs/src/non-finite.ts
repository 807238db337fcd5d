import * as tf from '@tensorflow/tfjs-core';

/**
 * The names of the tensors that hold a NaN or an infinity: what a run checks before it saves weights, so a
 * diverged model never overwrites a good one.
 */
export function nonFiniteTensors(named: Iterable<readonly [string, tf.Tensor]>): string[] {
  const out: string[] = [];
  for (const [name, tensor] of named) {
    const finite = tf.tidy(() => tf.all(tf.isFinite(tensor)).dataSync()[0]);
    if (!finite) out.push(name);
  }
  return out;
}
