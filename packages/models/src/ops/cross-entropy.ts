import * as tf from '@tensorflow/tfjs-core';

/** Label value that marks a position as not trained on (prompt tokens, padding), as in PyTorch and Hugging Face. */
export const IGNORE_INDEX = -100;

/**
 * Mean cross-entropy of `logits` [n, vocab] against `labels` [n] (int32), over the positions whose label is
 * not {@link IGNORE_INDEX}; 0 when there are none. The gradient is written out,
 * `(softmax(logits) - onehot(label)) / count` on the counted rows, so that no one-hot matrix is kept for
 * backward and no gather gradient (UnsortedSegmentSum, missing on wasm) is needed.
 */
export function maskedCrossEntropy(logits: tf.Tensor2D, labels: tf.Tensor1D): tf.Scalar {
  const [n, vocab] = logits.shape;
  const ce = tf.customGrad(((lg: tf.Tensor2D, lb: tf.Tensor1D, save: tf.GradSaveFunc) => {
    const isValid = tf.greaterEqual(lb, 0);
    const valid = tf.cast(isValid, 'float32');
    const safe = tf.where(isValid, lb, tf.zerosLike(lb));
    const count = tf.maximum(tf.sum(valid), 1);
    // Tensors the gradient needs must be saved: the forward pass's own intermediates are freed after it.
    save([lg, valid, safe, count]);
    const value = tf.tidy(() => {
      const flat = tf.add(tf.mul(tf.range(0, n, 1, 'int32'), tf.scalar(vocab, 'int32')), safe);
      const picked = tf.gather(tf.reshape(tf.logSoftmax(lg), [-1]), flat);
      return tf.div(tf.neg(tf.sum(tf.mul(picked, valid))), count) as tf.Scalar;
    });
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
        tf.tidy(() => {
          const [savedLogits, savedValid, savedSafe, savedCount] = saved as [
            tf.Tensor2D,
            tf.Tensor1D,
            tf.Tensor1D,
            tf.Scalar,
          ];
          const indices = tf.stack([tf.range(0, n, 1, 'int32'), savedSafe], 1);
          const onehot = tf.scatterND(indices, tf.ones([n]), [n, vocab]);
          const scale = tf.reshape(tf.div(tf.mul(savedValid, dy), savedCount), [n, 1]);
          // The labels get no gradient (zeros keep customGrad's one-gradient-per-input contract).
          return [tf.mul(tf.sub(tf.softmax(savedLogits), onehot), scale), tf.zerosLike(savedSafe)];
        }),
    };
  }) as never) as (lg: tf.Tensor2D, lb: tf.Tensor1D) => tf.Scalar;
  return ce(logits, labels);
}
