import type { BlockTrainerTask, EvaluationResult } from '@badam/core';
import type { DeviceLlama, DeviceLlamaBatch, DeviceTensor } from '@badam/cuda';
import type { PaddedBatch } from '@badam/data';

/**
 * A right-padded batch as @badam/cuda's Llama takes it: token rows flattened ([batch * seqLen], row-major),
 * labels unshifted with -100 where the loss ignores them, and each row's length before padding.
 */
export function deviceBatch(batch: PaddedBatch): DeviceLlamaBatch {
  const batchSize = batch.inputIds.length;
  const seqLen = batch.inputIds[0]?.length ?? 0;
  const inputIds = new Int32Array(batchSize * seqLen);
  const labels = new Int32Array(batchSize * seqLen);
  const lengths = new Int32Array(batchSize);
  for (let b = 0; b < batchSize; b++) {
    inputIds.set(batch.inputIds[b]!, b * seqLen);
    labels.set(batch.labels[b]!, b * seqLen);
    // Right padding: the mask is ones, then zeros.
    lengths[b] = batch.attentionMask[b]!.reduce((n, m) => n + m, 0);
  }
  return { batchSize, seqLen, inputIds, labels, lengths };
}

/** Tokens of a batch that are not padding (what tokens/s counts, as on tfjs). */
function realTokens(batch: PaddedBatch): number {
  return batch.attentionMask.reduce((n, row) => n + row.reduce((a, b) => a + b, 0), 0);
}

/**
 * Causal-LM training of a `DeviceLlama` (@badam/cuda) on padded batches, as @badam/models' `causalLmTask` is
 * on tfjs: the micro-batch's mean loss over labelled tokens, its real tokens, and evaluation loss with token
 * accuracy (argmax at position i against label i + 1). The gradients of the active block go straight into
 * the backend's fp32 accumulators (`gradientOf`), so none are returned.
 */
export function deviceCausalLmTask(
  model: DeviceLlama,
  gradientOf: (name: string) => DeviceTensor,
): BlockTrainerTask<PaddedBatch, Float32Array | DeviceTensor> {
  return {
    lossAndGradients(batch, trainable) {
      const { loss } = model.lossAndGradients(deviceBatch(batch), trainable, gradientOf);
      return { loss, tokens: realTokens(batch), gradients: new Map() };
    },
    evaluate(batch): EvaluationResult {
      const { loss, correct, counted } = model.evaluate(deviceBatch(batch));
      return {
        loss,
        weight: Math.max(batch.labelTokens, 1),
        metrics: { accuracy: counted > 0 ? correct / counted : 0 },
      };
    },
  };
}
