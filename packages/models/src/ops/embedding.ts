import * as tf from '@tensorflow/tfjs-core';

/**
 * Rows of `table` `[vocab, hidden]` at `ids` `[n]`, as `[n, hidden]`. The gradient (for a trained embedding) is
 * built with scatterND, which sums the rows of repeated ids: tfjs's own gather gradient needs the
 * UnsortedSegmentSum kernel, which the wasm backend does not have.
 */
export function embeddingLookup(table: tf.Tensor2D, ids: tf.Tensor1D): tf.Tensor2D {
  const lookup = tf.customGrad(((t: tf.Tensor2D, save: tf.GradSaveFunc) => {
    save([ids]);
    return {
      value: tf.gather(t, ids),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
        tf.scatterND(tf.reshape(saved[0]!, [-1, 1]), dy, t.shape),
    };
  }) as never) as (t: tf.Tensor2D) => tf.Tensor2D;
  return lookup(table);
}
