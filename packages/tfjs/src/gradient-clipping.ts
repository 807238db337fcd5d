import * as tf from '@tensorflow/tfjs-core';

/**
 * Global-norm clipping as `torch.nn.utils.clip_grad_norm_`: the L2 norm over all gradients together, and
 * when it exceeds `maxNorm` every gradient scaled by `maxNorm / (norm + 1e-6)`.
 *
 * @returns the clipped gradients (new tensors; the inputs are left alone) and the norm before clipping.
 */
export function clipByGlobalNorm(
  gradients: readonly tf.Tensor[],
  maxNorm: number,
): { clipped: tf.Tensor[]; norm: number } {
  const norm = globalNorm(gradients);
  const factor = maxNorm / (norm + 1e-6);
  const clipped = gradients.map((g) => (factor < 1 ? tf.mul(g, factor) : tf.clone(g)));
  return { clipped, norm };
}

/** The L2 norm of all `tensors` taken as one vector. */
export function globalNorm(tensors: readonly tf.Tensor[]): number {
  if (tensors.length === 0) return 0;
  return tf.tidy(() => Math.sqrt(tf.addN(tensors.map((t) => tf.sum(tf.square(t)))).dataSync()[0]!));
}
