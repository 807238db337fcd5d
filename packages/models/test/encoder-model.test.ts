import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { parametersOf } from '@badam/core';
import { writeSafetensors } from '@badam/safetensors';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EncoderClassifier, encoderConfigFromHf, loadEncoder, saveEncoder } from '../src/index.js';

interface Reference {
  config: Record<string, unknown>;
  head: 'sequence-classification' | 'multiple-choice';
  num_choices: number | null;
  input_ids: number[][];
  attention_mask: number[][];
  token_type_ids: number[][];
  labels: number[];
  logits: number[];
  loss: number;
  grads: Record<string, number[]>;
}
const REFERENCE = JSON.parse(
  readFileSync(new URL('./fixtures/encoder-reference.json', import.meta.url), 'utf8'),
) as Record<string, Reference>;

/** The weights of make-encoder-reference.py: 0.2 sin(0.37 i + phase(name)), LayerNorm weights 1 + 0.5 x that. */
function referenceWeights(model: EncoderClassifier): void {
  for (const [name, variable] of model.namedParameters) {
    const phase = [...name].reduce((s, c) => s + c.charCodeAt(0), 0) % 997;
    const values = Float32Array.from({ length: variable.size }, (_, i) => {
      const x = 0.2 * Math.sin(0.37 * i + phase);
      return name.endsWith('LayerNorm.weight') ? 1 + 0.5 * x : x;
    });
    variable.assign(tf.tensor(values, variable.shape));
  }
}

function batchOf(ref: Reference) {
  return {
    inputIds: tf.tensor2d(ref.input_ids, undefined, 'int32'),
    attentionMask: tf.tensor2d(ref.attention_mask, undefined, 'int32'),
    tokenTypeIds: tf.tensor2d(ref.token_type_ids, undefined, 'int32'),
    labels: tf.tensor1d(ref.labels, 'int32'),
    ...(ref.num_choices ? { numChoices: ref.num_choices } : {}),
  };
}

function worst(actual: ArrayLike<number>, expected: number[]): number {
  expect(actual.length).toBe(expected.length);
  let w = 0;
  for (let i = 0; i < expected.length; i++) w = Math.max(w, Math.abs(actual[i]! - expected[i]!));
  return w;
}

for (const backend of ['cpu', 'wasm'] as const) {
  describe(`EncoderClassifier on ${backend} against an independent PyTorch implementation of HF's forward`, () => {
    beforeAll(async () => {
      await tf.setBackend(backend);
    });
    afterEach(() => tf.disposeVariables());

    for (const [name, ref] of Object.entries(REFERENCE)) {
      it(`${name}: logits, loss and gradients`, () => {
        const model = new EncoderClassifier(encoderConfigFromHf(ref.config, { head: ref.head }));
        referenceWeights(model);
        const batch = batchOf(ref);
        expect(worst(model.logits(batch).dataSync(), ref.logits), 'logits').toBeLessThan(2e-5);
        const names = Object.keys(ref.grads);
        const variables = names.map((n) => model.parameter(n));
        const { value, grads } = tf.variableGrads(() => model.loss(batch, false), variables);
        expect(value.dataSync()[0]).toBeCloseTo(ref.loss, 5);
        names.forEach((n, i) =>
          expect(worst(grads[variables[i]!.name]!.dataSync(), ref.grads[n]!), `d loss / d ${n}`).toBeLessThan(
            5e-6,
          ),
        );
      });
    }
  });
}

describe('EncoderClassifier', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });
  afterEach(() => tf.disposeVariables());
  const roberta = REFERENCE['roberta-sequence-classification']!.config;

  it('making and disposing a model leaves no tensor behind', () => {
    const before = tf.memory().numTensors;
    const model = new EncoderClassifier(encoderConfigFromHf(roberta, { head: 'sequence-classification' }));
    model.dispose();
    expect(tf.memory().numTensors - before).toBe(0);
  });

  it('lists the parameters core lists for the architecture, in the same order', () => {
    const config = encoderConfigFromHf(roberta, { head: 'sequence-classification' });
    const model = new EncoderClassifier(config);
    expect(model.namedParameters.map(([n, v]) => [n, v.shape])).toEqual(
      parametersOf({ kind: 'encoder', ...config }, 'float32').map((p) => [p.name, p.shape]),
    );
    expect(model.headParameterNames).toEqual([
      'classifier.dense.weight',
      'classifier.dense.bias',
      'classifier.out_proj.weight',
      'classifier.out_proj.bias',
    ]);
  });

  it('dropout is active in training only, and seeded', () => {
    const config = encoderConfigFromHf(
      { ...roberta, hidden_dropout_prob: 0.3 },
      { head: 'sequence-classification' },
    );
    const model = new EncoderClassifier(config, { seed: 3 });
    const batch = batchOf(REFERENCE['roberta-sequence-classification']!);
    const a = model.logits(batch, false).dataSync();
    expect(model.logits(batch, false).dataSync()).toEqual(a);
    expect(Array.from(model.logits(batch, true).dataSync())).not.toEqual(Array.from(a));
  });

  it('saves and loads a Hugging Face directory; a masked-LM checkpoint gets a fresh head', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'encoder-'));
    const config = encoderConfigFromHf(roberta, { head: 'sequence-classification' });
    const model = new EncoderClassifier(config, { seed: 5 });
    await saveEncoder(model, dir);
    const { model: loaded, newlyInitialized, unusedTensors } = await loadEncoder(dir);
    expect(newlyInitialized).toEqual([]);
    expect(unusedTensors).toEqual([]);
    const batch = batchOf(REFERENCE['roberta-sequence-classification']!);
    expect(loaded.logits(batch).dataSync()).toEqual(model.logits(batch).dataSync());

    // A pretraining checkpoint: encoder weights plus an MLM head, fine-tuned as a 2-way classifier.
    const mlm = join(dir, 'mlm');
    const encoderOnly = model.namedParameters.filter(([n]) => !n.startsWith('classifier'));
    await writeSafetensors(join(mlm, 'model.safetensors'), [
      ...encoderOnly.map(([name, v]) => ({
        name,
        dtype: 'float32' as const,
        shape: [...v.shape],
        data: v.dataSync() as Float32Array,
      })),
      { name: 'lm_head.bias', dtype: 'float32', shape: [40], data: new Float32Array(40) },
    ]);
    await import('node:fs/promises').then((fs) =>
      fs.writeFile(
        join(mlm, 'config.json'),
        JSON.stringify({ ...roberta, architectures: ['RobertaForMaskedLM'] }),
      ),
    );
    const fine = await loadEncoder(mlm, { head: 'sequence-classification', numLabels: 2 });
    expect(fine.newlyInitialized).toEqual([
      'classifier.dense.weight',
      'classifier.dense.bias',
      'classifier.out_proj.weight',
      'classifier.out_proj.bias',
    ]);
    expect(fine.unusedTensors).toEqual(['lm_head.bias']);
    expect(fine.model.logits(batch).shape).toEqual([2, 2]);
    await rm(dir, { recursive: true, force: true });
  });

  it('rejects a sequence longer than the position table and a bad head', () => {
    const model = new EncoderClassifier(encoderConfigFromHf(roberta, { head: 'sequence-classification' }));
    const long = tf.ones([1, 19], 'int32') as tf.Tensor2D;
    expect(() => model.logits({ inputIds: long })).toThrow('at most 18 tokens');
    expect(() => new EncoderClassifier(encoderConfigFromHf(roberta, { head: 'masked-lm' }))).toThrow(
      '"sequence-classification" or "multiple-choice"',
    );
  });
});
