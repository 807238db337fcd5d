import * as tf from '@tensorflow/tfjs-core';

/**
 * Fails early, with the fix, when TensorFlow.js has no gradients registered: the Node build of
 * `@tensorflow/tfjs-core` leaves them out, and `@tensorflow/tfjs` (or `@tensorflow/tfjs-node`) registers
 * them when imported. Without them the first backward pass would die deep inside tfjs.
 */
export function assertGradientsRegistered(): void {
  // MatMul and Neg are the gradients every training step needs; probing two guards against partial registries.
  if (tf.getGradient('BatchMatMul') === undefined || tf.getGradient('Neg') === undefined) {
    throw new Error(
      "TensorFlow.js has no gradients registered: import '@tensorflow/tfjs' (or '@tensorflow/tfjs-node') " +
        "before training; @tensorflow/tfjs-core's Node build alone does not register them",
    );
  }
}
