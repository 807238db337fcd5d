import { type LlamaConfig, llamaConfigFromHf, type NamedArray } from '@badam/core';
import { LlamaForCausalLM, llamaWeights } from '@badam/models';
import * as tf from '@tensorflow/tfjs-core';
import type { DeviceLlamaBatch, DeviceTensor } from '../src/index.js';
import { randomArray } from './helpers.js';

/** A small Llama: GQA (4 query heads, 2 kv heads, headDim 16), 3 layers, llama3 RoPE scaling that bites. */
export function smallLlamaConfig(options: { tied: boolean; qkvBias?: boolean }): LlamaConfig {
  return llamaConfigFromHf({
    model_type: options.qkvBias ? 'qwen2' : 'llama',
    vocab_size: 61,
    hidden_size: 64,
    intermediate_size: 96,
    num_hidden_layers: 3,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 64,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    // original_max_position_embeddings 16: wavelengths 6, 20, 63... fall on all three sides of the blend.
    rope_scaling: {
      rope_type: 'llama3',
      factor: 4,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 16,
    },
    tie_word_embeddings: options.tied,
  });
}

/**
 * Two right-padded rows (lengths 9 and 6 of 9): prompt positions and padding labelled -100, padding ids
 * are token 0.
 */
export function smallBatch(vocab: number): DeviceLlamaBatch {
  const seqLen = 9;
  const lengths = Int32Array.of(9, 6);
  const inputIds = new Int32Array(2 * seqLen);
  const labels = new Int32Array(2 * seqLen).fill(-100);
  let state = 12345;
  const next = () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state % vocab;
  };
  for (let r = 0; r < 2; r++) {
    for (let s = 0; s < lengths[r]!; s++) {
      const id = next();
      inputIds[r * seqLen + s] = id;
      // The first 3 tokens are the "prompt": not trained on.
      if (s >= 3) labels[r * seqLen + s] = id;
    }
  }
  return { batchSize: 2, seqLen, inputIds, labels, lengths };
}

/**
 * The tfjs reference model for `config` with seeded weights whose norms (all ones at initialisation) are
 * made non-trivial, so their gradients are checked for real. Returns the model and its weights as fp32
 * arrays (rounded to bf16 when `bf16`).
 */
export function referenceModel(
  config: LlamaConfig,
  seed: number,
): { model: LlamaForCausalLM; arrays: NamedArray[] } {
  const model = new LlamaForCausalLM(config, { seed, initializerRange: 0.08 });
  let k = 1;
  for (const [name, variable] of model.namedParameters) {
    if (name.endsWith('norm.weight') || name.endsWith('.bias')) {
      const base = name.endsWith('.bias') ? 0 : 1;
      const values = randomArray(variable.size, 1000 + k++, 0.3).map((x) => base + x);
      tf.tidy(() => variable.assign(tf.tensor(values, variable.shape)));
    }
  }
  return { model, arrays: llamaWeights(model, 'float32') };
}

/** Sets the reference model's weights to `arrays` (e.g. bf16-rounded values). */
export function assignWeights(model: LlamaForCausalLM, arrays: readonly NamedArray[]): void {
  for (const a of arrays) {
    const v = model.parameter(a.name);
    tf.tidy(() => v.assign(tf.tensor(a.data as Float32Array, v.shape)));
  }
}

/** tfjs loss and gradients of `names` for `batch`. */
export function referenceGradients(
  model: LlamaForCausalLM,
  batch: DeviceLlamaBatch,
  names: readonly string[],
): { loss: number; grads: Map<string, Float32Array> } {
  const { batchSize: b, seqLen: s } = batch;
  const lengths = batch.lengths ?? new Int32Array(b).fill(s);
  const mask = new Int32Array(b * s).map((_, i) => (i % s < lengths[Math.floor(i / s)]! ? 1 : 0));
  const inputs = {
    inputIds: tf.tensor2d(batch.inputIds, [b, s], 'int32'),
    labels: tf.tensor2d(batch.labels, [b, s], 'int32'),
    attentionMask: tf.tensor2d(mask, [b, s], 'int32'),
  };
  const variables = names.map((n) => model.parameter(n));
  const { value, grads } = tf.variableGrads(() => model.loss(inputs), variables);
  const out = new Map(names.map((n, i) => [n, grads[variables[i]!.name]!.dataSync() as Float32Array]));
  const loss = value.dataSync()[0]!;
  tf.dispose([value, grads, inputs.inputIds, inputs.labels, inputs.attentionMask]);
  return { loss, grads: out };
}

/** ||a - b|| / ||b|| and max |a - b| / max |b|. */
export function relativeErrors(a: ArrayLike<number>, b: ArrayLike<number>): { norm: number; maxAbs: number } {
  let diff2 = 0;
  let ref2 = 0;
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < b.length; i++) {
    const d = a[i]! - b[i]!;
    diff2 += d * d;
    ref2 += b[i]! * b[i]!;
    maxDiff = Math.max(maxDiff, Math.abs(d));
    maxRef = Math.max(maxRef, Math.abs(b[i]!));
  }
  if (a.length !== b.length || Number.isNaN(diff2)) return { norm: Infinity, maxAbs: Infinity };
  return { norm: Math.sqrt(diff2 / ref2), maxAbs: maxDiff / maxRef };
}

/** Names of the parameters of layer `i`. */
export function layerNames(arrays: readonly NamedArray[], i: number): string[] {
  return arrays.filter((a) => a.name.startsWith(`model.layers.${i}.`)).map((a) => a.name);
}

export type { DeviceTensor };
