import type { SeededRandom } from '@badam/core';
import type { NamedVariable } from '@badam/tfjs';
import * as tf from '@tensorflow/tfjs-core';

/** A LoRA adapter of one linear layer: `y += scale * (x A^T) B^T`. */
export interface LoraAdapter {
  readonly a: tf.Variable;
  readonly b: tf.Variable;
  readonly scale: number;
}

/**
 * An adapter for a weight of shape [out, in], initialised as peft does: A Kaiming-uniform (bound 1/sqrt(in)),
 * B zero, so the adapted layer starts equal to the base layer. Variables are named `<prefix>/<module>.lora_A.default.weight`.
 */
export function createLoraAdapter(
  rng: SeededRandom,
  weight: tf.Variable,
  module: string,
  variablePrefix: string,
  rank: number,
  alpha: number,
): LoraAdapter {
  const [out, inp] = weight.shape as [number, number];
  const bound = 1 / Math.sqrt(inp);
  const a = Float32Array.from({ length: rank * inp }, () => (rng.nextFloat() * 2 - 1) * bound);
  return {
    a: tf.tidy(() =>
      tf.variable(tf.tensor2d(a, [rank, inp]), true, `${variablePrefix}/${module}.lora_A.default.weight`),
    ),
    b: tf.tidy(() =>
      tf.variable(tf.zeros([out, rank]), true, `${variablePrefix}/${module}.lora_B.default.weight`),
    ),
    scale: alpha / rank,
  };
}

/**
 * `named_parameters()` order with adapters: each weight, then the `lora_A` and `lora_B` of the module it
 * belongs to, as peft lists them.
 */
export function withAdapters(
  ordered: ReadonlyArray<readonly [string, tf.Variable]>,
  adapterOf: (weightName: string) => { name: string; lora: LoraAdapter | undefined } | undefined,
): NamedVariable[] {
  const out: NamedVariable[] = [];
  for (const [name, variable] of ordered) {
    out.push([name, variable]);
    const linear = adapterOf(name);
    if (linear?.lora) {
      out.push([`${linear.name}.lora_A.default.weight`, linear.lora.a]);
      out.push([`${linear.name}.lora_B.default.weight`, linear.lora.b]);
    }
  }
  return out;
}
