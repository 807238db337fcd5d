import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { causalLmTask, LlamaForCausalLM, llamaConfigFromHf } from '../src/index.js';

const REFERENCE = JSON.parse(
  readFileSync(new URL('./fixtures/llama-reference.json', import.meta.url), 'utf8'),
) as {
  llama: {
    config: Record<string, unknown>;
    input_ids: number[][];
    labels: number[][];
    attention_mask: number[][];
    loss: number;
  };
};

describe('causalLmTask', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });

  it("trains on the model's loss, counts real tokens, and evaluates loss with next-token accuracy", () => {
    const ref = REFERENCE.llama;
    const model = new LlamaForCausalLM(llamaConfigFromHf(ref.config), { seed: 3 });
    const batch = {
      inputIds: ref.input_ids,
      labels: ref.labels,
      attentionMask: ref.attention_mask,
      labelTokens: ref.labels.flat().filter((l) => l >= 0).length,
    };
    const task = causalLmTask(model);
    const tensors = {
      inputIds: tf.tensor2d(ref.input_ids, undefined, 'int32'),
      labels: tf.tensor2d(ref.labels, undefined, 'int32'),
      attentionMask: tf.tensor2d(ref.attention_mask, undefined, 'int32'),
    };
    const want = model.loss(tensors).dataSync()[0]!;
    expect(task.loss(batch).dataSync()[0]).toBe(want);
    expect(task.tokens(batch)).toBe(ref.attention_mask.flat().reduce((a, b) => a + b, 0));

    // Accuracy by hand: the argmax at position i against the label at i + 1, over labelled positions.
    const logits = model.forward(tensors.inputIds, tensors.attentionMask).arraySync() as number[][][];
    let correct = 0;
    let counted = 0;
    ref.labels.forEach((row, r) => {
      for (let i = 0; i + 1 < row.length; i++) {
        if (row[i + 1]! < 0) continue;
        const scores = logits[r]![i]!;
        counted += 1;
        if (scores.indexOf(Math.max(...scores)) === row[i + 1]) correct += 1;
      }
    });
    const evaluation = task.evaluate!(batch);
    expect(evaluation.loss).toBe(want);
    expect(evaluation.weight).toBe(batch.labelTokens);
    expect(evaluation.metrics!.accuracy).toBe(correct / counted);
    tf.dispose(Object.values(tensors));
    model.dispose();
  });
});
