import type { EvaluationResult } from '@badam/core';
import type { TfjsTrainingTask } from '@badam/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import type { LlamaForCausalLM } from './llama-model.js';

/**
 * Right-padded rows of token ids as plain arrays: what a causal-LM task trains on (@badam/data's
 * `PaddedBatch` is one). Labels are unshifted, -100 where the loss ignores them; the mask is 1 on real
 * tokens, 0 on padding.
 */
export interface PaddedTokenBatch {
  readonly inputIds: readonly (readonly number[])[];
  readonly labels: readonly (readonly number[])[];
  readonly attentionMask: readonly (readonly number[])[];
  /** Tokens that carry a label (what the loss averages over, and evaluation weights by). */
  readonly labelTokens: number;
}

/**
 * Causal-LM training of a {@link LlamaForCausalLM} on padded batches, as @badam/tfjs's trainer takes it: the
 * micro-batch's mean loss over labelled tokens, its real (unpadded) tokens, and evaluation loss with token
 * accuracy (argmax at position i against label i + 1, over labelled positions).
 *
 * @example
 * ```ts
 * const backend = await createTfjsTrainerBackend(plan, {
 *   namedParameters: () => model.namedParameters,
 *   task: causalLmTask(model),
 * });
 * ```
 */
export function causalLmTask<TBatch extends PaddedTokenBatch>(
  model: LlamaForCausalLM,
): TfjsTrainingTask<TBatch> {
  const tensors = (batch: PaddedTokenBatch) => ({
    inputIds: tf.tensor2d(batch.inputIds as number[][], undefined, 'int32'),
    labels: tf.tensor2d(batch.labels as number[][], undefined, 'int32'),
    attentionMask: tf.tensor2d(batch.attentionMask as number[][], undefined, 'int32'),
  });
  return {
    loss: (batch) => tf.tidy(() => model.loss(tensors(batch))),
    tokens: (batch) => batch.attentionMask.reduce((n, row) => n + row.reduce((a, b) => a + b, 0), 0),
    evaluate(batch): EvaluationResult {
      return tf.tidy(() => {
        const t = tensors(batch);
        const loss = model.loss(t).dataSync()[0]!;
        const [b, s] = t.inputIds.shape;
        const predicted = tf
          .argMax(
            tf.slice(
              model.forward(t.inputIds, t.attentionMask),
              [0, 0, 0],
              [b, s - 1, model.config.vocabSize],
            ),
            -1,
          )
          .dataSync();
        let correct = 0;
        let counted = 0;
        for (let r = 0; r < b; r++) {
          for (let i = 0; i < s - 1; i++) {
            const label = batch.labels[r]![i + 1]!;
            if (label < 0) continue;
            counted += 1;
            if (predicted[r * (s - 1) + i] === label) correct += 1;
          }
        }
        return {
          loss,
          weight: Math.max(batch.labelTokens, 1),
          metrics: { accuracy: counted > 0 ? correct / counted : 0 },
        };
      });
    },
  };
}
