import { BadamOptionError, SeededRandom } from '@badam/core';
import * as tf from '@tensorflow/tfjs-core';
import type { LlamaForCausalLM } from '../llama/llama-model.js';

/** How {@link generate} picks tokens. */
export interface GenerationOptions {
  /** Most new tokens. */
  maxNewTokens: number;
  /** 0 (default) is greedy decoding; above 0, sampling at this temperature. */
  temperature?: number;
  /** Nucleus sampling: sample among the most likely tokens whose probabilities sum to `topP`. Default 1. */
  topP?: number;
  /** Token ids that end generation (not included in the result). */
  stopTokenIds?: readonly number[];
  /** Seed of the sampler. Default 0. */
  seed?: number;
}

/**
 * Continues `promptIds` with the model: greedy decoding, or temperature + top-p sampling from a seeded
 * generator. Each step runs the model on the whole sequence (no key/value cache: meant for the small
 * models tfjs trains), keeping the last `model.maxPositions` tokens. Returns the new token ids.
 */
export function generate(
  model: LlamaForCausalLM,
  promptIds: readonly number[],
  options: GenerationOptions,
): number[] {
  const { maxNewTokens, temperature = 0, topP = 1, stopTokenIds = [], seed = 0 } = options;
  if (!Number.isSafeInteger(maxNewTokens) || maxNewTokens < 0)
    throw new BadamOptionError('maxNewTokens', maxNewTokens, 'an integer >= 0');
  if (!(temperature >= 0)) throw new BadamOptionError('temperature', temperature, 'a number >= 0');
  if (!(topP > 0 && topP <= 1)) throw new BadamOptionError('topP', topP, 'a number in (0, 1]');
  if (promptIds.length === 0) throw new BadamOptionError('promptIds', promptIds, 'at least one token');
  const rng = SeededRandom.fromSeed(seed);
  const sequence = [...promptIds];
  const generated: number[] = [];
  for (let step = 0; step < maxNewTokens; step++) {
    const window = sequence.slice(-model.maxPositions);
    const logits = tf.tidy(() => {
      const all = model.forward(tf.tensor2d([window], [1, window.length], 'int32'));
      return tf
        .slice(all, [0, window.length - 1, 0], [1, 1, model.config.vocabSize])
        .dataSync() as Float32Array;
    });
    const next = temperature === 0 ? argmax(logits) : sample(logits, temperature, topP, rng);
    if (stopTokenIds.includes(next)) break;
    generated.push(next);
    sequence.push(next);
  }
  return generated;
}

function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

function sample(logits: Float32Array, temperature: number, topP: number, rng: SeededRandom): number {
  const max = logits.reduce((m, x) => Math.max(m, x), Number.NEGATIVE_INFINITY);
  const weights = Array.from(logits, (x, i) => ({ i, p: Math.exp((x - max) / temperature) }));
  const total = weights.reduce((s, w) => s + w.p, 0);
  weights.sort((a, b) => b.p - a.p);
  let kept = 0;
  let cumulative = 0;
  for (const w of weights) {
    kept += 1;
    cumulative += w.p / total;
    if (cumulative >= topP) break;
  }
  const nucleus = weights.slice(0, kept);
  const mass = nucleus.reduce((s, w) => s + w.p, 0);
  let r = rng.nextFloat() * mass;
  for (const w of nucleus) {
    r -= w.p;
    if (r <= 0) return w.i;
  }
  return nucleus[nucleus.length - 1]!.i;
}
