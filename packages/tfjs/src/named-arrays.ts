import { BadamStateError, type NamedArray } from '@badam/core';
import * as tf from '@tensorflow/tfjs-core';
import type { NamedTensor } from './named-tensor.js';

/** Reads tensors into plain named arrays (float32 or int32), renaming each. */
export async function namedTensorsToArrays(
  tensors: readonly NamedTensor[],
  rename: (name: string) => string = (n) => n,
): Promise<NamedArray[]> {
  const out: NamedArray[] = [];
  for (const { name, tensor } of tensors) {
    const data = await tensor.data();
    const dtype = tensor.dtype === 'int32' ? 'int32' : 'float32';
    out.push({
      name: rename(name),
      dtype,
      shape: [...tensor.shape],
      data: dtype === 'int32' ? Int32Array.from(data as Int32Array) : Float32Array.from(data as Float32Array),
    });
  }
  return out;
}

/** Weights of `[name, variable]` pairs as named fp32 arrays. */
export function variablesToArrays(named: ReadonlyArray<readonly [string, tf.Variable]>): NamedArray[] {
  return named.map(([name, v]) => ({
    name,
    dtype: 'float32',
    shape: [...v.shape],
    data: Float32Array.from(v.dataSync()),
  }));
}

/**
 * Assigns saved weights (fp32 arrays, e.g. a checkpoint's) to the variables of `named`: every variable must
 * have one, of its shape.
 */
export function assignWeights(
  named: ReadonlyArray<readonly [string, tf.Variable]>,
  weights: readonly NamedArray[],
): void {
  const byName = new Map(weights.map((w) => [w.name, w]));
  for (const [name, variable] of named) {
    const saved = byName.get(name);
    if (saved === undefined) {
      throw new BadamStateError(
        `the checkpoint has no weight ${JSON.stringify(name)}; resume with the model it was saved from`,
      );
    }
    if (saved.shape.join(',') !== variable.shape.join(',')) {
      throw new BadamStateError(
        `the checkpoint's ${name} has shape [${saved.shape.join(', ')}], the model's is [${variable.shape.join(', ')}]`,
      );
    }
    tf.tidy(() => variable.assign(tf.tensor(saved.data as Float32Array, variable.shape, 'float32')));
  }
}
