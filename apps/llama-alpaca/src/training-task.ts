import type { EvaluationResult } from '@badam/core';
import type { PaddedBatch } from '@badam/data';
import type { LlamaForCausalLM } from '@badam/models';
import type { TfjsTrainingTask } from '@badam/tfjs';
import * as tf from '@tensorflow/tfjs-core';

/** Causal-LM training on padded batches: the loss, the tokens, and eval loss with token accuracy. */
export function causalLmTask(model: LlamaForCausalLM): TfjsTrainingTask<PaddedBatch> {
  const tensors = (batch: PaddedBatch) => ({
    inputIds: tf.tensor2d(batch.inputIds, undefined, 'int32'),
    labels: tf.tensor2d(batch.labels, undefined, 'int32'),
    attentionMask: tf.tensor2d(batch.attentionMask, undefined, 'int32'),
  });
  return {
    loss: (batch) => tf.tidy(() => model.loss(tensors(batch))),
    tokens: (batch) => batch.attentionMask.reduce((n, row) => n + row.reduce((a, b) => a + b, 0), 0),
    evaluate(batch): EvaluationResult {
      return tf.tidy(() => {
        const t = tensors(batch);
        const loss = model.loss(t).dataSync()[0]!;
        // Token accuracy: argmax at position i against label i + 1, over labelled positions.
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
