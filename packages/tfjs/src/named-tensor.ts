import type * as tf from '@tensorflow/tfjs-core';

/** A tensor with a name, as tf.Optimizer's `applyGradients` and `getWeights` use them (tfjs-core does not export the type from its root). */
export interface NamedTensor {
  name: string;
  tensor: tf.Tensor;
}
