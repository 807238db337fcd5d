import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { AdamW, BlockOptimizer } from '@badam/tfjs';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LlamaForCausalLM, llamaConfigFromHf } from '../src/index.js';

interface Reference {
  config: Record<string, unknown>;
  input_ids: number[][];
  labels: number[][];
  attention_mask: number[][];
  logits: number[];
  loss: number;
  grads: Record<string, number[]>;
}
const REFERENCE = JSON.parse(
  readFileSync(new URL('./fixtures/llama-reference.json', import.meta.url), 'utf8'),
) as Record<string, Reference>;

/** The weights of make-llama-reference.py: 0.2 sin(0.37 i + phase(name)), norms 1 + 0.5 x that. */
function referenceWeights(model: LlamaForCausalLM): void {
  for (const [name, variable] of model.namedParameters) {
    const phase = [...name].reduce((s, c) => s + c.charCodeAt(0), 0) % 997;
    const values = Float64Array.from({ length: variable.size }, (_, i) => 0.2 * Math.sin(0.37 * i + phase));
    const isNorm = name.endsWith('norm.weight');
    variable.assign(
      tf.tensor(
        Float32Array.from(values, (x) => (isNorm ? 1 + 0.5 * x : x)),
        variable.shape,
      ),
    );
  }
}

function inputs(ref: Reference) {
  return {
    inputIds: tf.tensor2d(ref.input_ids, undefined, 'int32'),
    labels: tf.tensor2d(ref.labels, undefined, 'int32'),
    attentionMask: tf.tensor2d(ref.attention_mask, undefined, 'int32'),
  };
}

function expectClose(actual: ArrayLike<number>, expected: number[], tolerance: number, what: string) {
  expect(actual.length, what).toBe(expected.length);
  let worst = 0;
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!));
  expect(worst, `${what}: largest difference`).toBeLessThan(tolerance);
}

for (const backend of ['cpu', 'wasm'] as const) {
  describe(`LlamaForCausalLM on ${backend} against an independent PyTorch implementation of HF's forward`, () => {
    beforeAll(async () => {
      await tf.setBackend(backend);
    });
    afterEach(() => tf.disposeVariables());

    for (const [family, ref] of Object.entries(REFERENCE)) {
      it(`${family}: logits, loss and gradients (GQA, ${family === 'llama' ? 'llama3 RoPE scaling, untied head' : 'q/k/v biases, tied embeddings'}, padding, -100 labels)`, () => {
        const model = new LlamaForCausalLM(llamaConfigFromHf(ref.config));
        referenceWeights(model);
        const batch = inputs(ref);
        const logits = model.forward(batch.inputIds, batch.attentionMask);
        // Logits of padded query positions are meaningless in both; compare real tokens only.
        const flat = logits.dataSync();
        const vocab = model.config.vocabSize;
        const real = ref.attention_mask
          .flat()
          .flatMap((m, p) => (m === 1 ? Array.from({ length: vocab }, (_, v) => p * vocab + v) : []));
        expectClose(
          real.map((i) => flat[i]!),
          real.map((i) => ref.logits[i]!),
          2e-5,
          'logits',
        );
        for (const checkpointing of [false, true]) {
          model.gradientCheckpointing = checkpointing;
          const names = Object.keys(ref.grads);
          const variables = names.map((n) => model.parameter(n));
          const { value, grads } = tf.variableGrads(() => model.loss(batch), variables);
          expect(value.dataSync()[0]).toBeCloseTo(ref.loss, 5);
          names.forEach((n, i) =>
            expectClose(grads[variables[i]!.name]!.dataSync(), ref.grads[n]!, 2e-6, `d loss / d ${n}`),
          );
          tf.dispose([value, grads]);
        }
      });
    }
  });
}

describe('LlamaForCausalLM', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });
  afterEach(() => tf.disposeVariables());
  const config = llamaConfigFromHf({
    model_type: 'llama',
    vocab_size: 32,
    hidden_size: 16,
    intermediate_size: 24,
    num_hidden_layers: 3,
    num_attention_heads: 4,
    num_key_value_heads: 2,
  });

  it('making, adapting and disposing a model leaves no tensor behind (one per parameter leaked before)', () => {
    const before = tf.memory().numTensors;
    const model = new LlamaForCausalLM(config, { seed: 1 });
    model.addLora({ rank: 2, alpha: 4, dropout: 0, targetModules: 'all' }, 1);
    model.dispose();
    expect(tf.memory().numTensors - before).toBe(0);
  });

  it('lists parameters with Hugging Face names in named_parameters order', () => {
    const model = new LlamaForCausalLM(config);
    const names = model.namedParameters.map(([n]) => n);
    expect(names.slice(0, 4)).toEqual([
      'model.embed_tokens.weight',
      'model.layers.0.self_attn.q_proj.weight',
      'model.layers.0.self_attn.k_proj.weight',
      'model.layers.0.self_attn.v_proj.weight',
    ]);
    expect(names.slice(-2)).toEqual(['model.norm.weight', 'lm_head.weight']);
    expect(names).toHaveLength(1 + 3 * 9 + 2);
  });

  it('LoRA: adapters named like peft, only they train in LoRA mode, B starts at zero, merge folds them in', () => {
    const model = new LlamaForCausalLM(config, { seed: 3 });
    model.addLora({ rank: 2, alpha: 4, targetModules: ['q_proj', 'v_proj'] });
    const names = model.namedParameters.map(([n]) => n);
    expect(names.slice(1, 6)).toEqual([
      'model.layers.0.self_attn.q_proj.weight',
      'model.layers.0.self_attn.q_proj.lora_A.default.weight',
      'model.layers.0.self_attn.q_proj.lora_B.default.weight',
      'model.layers.0.self_attn.k_proj.weight',
      'model.layers.0.self_attn.v_proj.weight',
    ]);
    const ids = tf.tensor2d([[1, 2, 3, 4, 5]], undefined, 'int32');
    const before = model.forward(ids).dataSync();
    // B = 0: the adapters change nothing until trained.
    expect(new LlamaForCausalLM(config, { seed: 3 }).forward(ids).dataSync()).toEqual(before);
    const optimizer = new BlockOptimizer({
      baseOptimizer: new AdamW({ learningRate: 0.05 }),
      namedParameters: model.namedParameters,
      switchBlockEvery: 2,
      verbose: 0,
    });
    expect(optimizer.engine.partition.loraMode).toBe(true);
    expect(optimizer.trainableVariables.map((v) => v.name.split('/')[1])).toEqual([
      'model.layers.0.self_attn.q_proj.lora_A.default.weight',
      'model.layers.0.self_attn.q_proj.lora_B.default.weight',
      'model.layers.0.self_attn.v_proj.lora_A.default.weight',
      'model.layers.0.self_attn.v_proj.lora_B.default.weight',
    ]);
    const labels = tf.tensor2d([[1, 2, 3, 4, 5]], undefined, 'int32');
    for (let i = 0; i < 4; i++) optimizer.minimize(() => model.loss({ inputIds: ids, labels }));
    const adapted = model.forward(ids).dataSync();
    expect(adapted).not.toEqual(before);
    model.mergeLora();
    expect(model.namedParameters.some(([n]) => n.includes('lora'))).toBe(false);
    const merged = model.forward(ids).dataSync();
    merged.forEach((x, i) => expect(x).toBeCloseTo(adapted[i]!, 4));
  });

  it('rejects bad input with the fix', () => {
    const model = new LlamaForCausalLM(config);
    expect(() =>
      model.loss({
        inputIds: tf.tensor2d([[1]], undefined, 'int32'),
        labels: tf.tensor2d([[1]], undefined, 'int32'),
      }),
    ).toThrow(/at least 2 tokens/);
    expect(() => model.addLora({ rank: 0, alpha: 1, targetModules: 'all' })).toThrow(
      /lora rank must be an integer >= 1/,
    );
    expect(() => model.addLora({ rank: 2, alpha: 1, targetModules: ['qkv'] })).toThrow(
      /lora target module must be one of q_proj/,
    );
  });
});
