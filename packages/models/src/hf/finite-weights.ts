import { SafetensorsError } from '@badam/safetensors';

/**
 * Refuses a weight of a model being loaded that holds a NaN or an infinity, naming the tensor and the
 * first bad element: trained on, one bad value (even in an embedding row no example uses) makes every
 * checkpoint of the run unsavable, found only at its end.
 */
export function checkFiniteWeight(directory: string, name: string, values: Float32Array): void {
  for (let i = 0; i < values.length; i++) {
    const value = values[i]!;
    if (!Number.isFinite(value)) {
      throw new SafetensorsError(
        directory,
        `tensor ${name} holds ${value} (element ${i} of ${values.length}): the weights are damaged or were saved from a diverged run; use a good copy of the model`,
      );
    }
  }
}
