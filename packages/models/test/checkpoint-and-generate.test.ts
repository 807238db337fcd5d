import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile, writeSafetensorsModel } from '@badam/safetensors';
import * as tf from '@tensorflow/tfjs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  generate,
  LlamaForCausalLM,
  llamaConfigFromHf,
  llamaWeights,
  loadLlama,
  loadLoraAdapter,
  readLoraAdapterConfig,
  saveLlama,
  saveLoraAdapter,
} from '../src/index.js';

const root = mkdtempSync(join(tmpdir(), 'badam-models-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const HF_CONFIG = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  vocab_size: 40,
  hidden_size: 16,
  intermediate_size: 24,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  max_position_embeddings: 64,
  tie_word_embeddings: false,
  bos_token_id: 1,
  eos_token_id: 2,
};

describe('Hugging Face checkpoints', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });
  afterEach(() => tf.disposeVariables());

  it('saves config.json + safetensors and loads them back identically; sharded too', async () => {
    const model = new LlamaForCausalLM(llamaConfigFromHf(HF_CONFIG), { seed: 5, initializerRange: 0.1 });
    const ids = tf.tensor2d([[1, 7, 3, 9]], undefined, 'int32');
    const expected = model.forward(ids).dataSync();
    for (const [dir, maxShardBytes] of [
      [join(root, 'single'), undefined],
      [join(root, 'sharded'), 20_000],
    ] as const) {
      const files = await saveLlama(model, dir, maxShardBytes ? { maxShardBytes } : {});
      expect(files[0]).toBe('config.json');
      if (maxShardBytes) expect(files.at(-1)).toBe('model.safetensors.index.json');
      const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
      expect(config).toMatchObject({
        model_type: 'llama',
        num_key_value_heads: 2,
        architectures: ['LlamaForCausalLM'],
        torch_dtype: 'float32',
      });
      const { model: loaded, unusedTensors } = await loadLlama(dir);
      expect(unusedTensors).toEqual([]);
      expect(loaded.forward(ids).dataSync()).toEqual(expected);
    }
  });

  it('reads BF16 and F16 checkpoints into fp32', async () => {
    const model = new LlamaForCausalLM(llamaConfigFromHf(HF_CONFIG), { seed: 6, initializerRange: 0.1 });
    const dir = join(root, 'bf16');
    await saveLlama(model, dir, { dtype: 'bfloat16' });
    const file = await SafetensorsFile.open(join(dir, 'model.safetensors'));
    expect(file.entry('model.norm.weight').dtype).toBe('BF16');
    await file.close();
    const { model: loaded } = await loadLlama(dir);
    const a = model.parameter('model.layers.0.mlp.up_proj.weight').dataSync();
    const b = loaded.parameter('model.layers.0.mlp.up_proj.weight').dataSync();
    a.forEach((x, i) => expect(Math.abs(b[i]! - x)).toBeLessThanOrEqual(Math.abs(x) * 2 ** -8));
  });

  it('a missing tensor, a wrong shape, a bad config are errors that name the problem', async () => {
    const model = new LlamaForCausalLM(llamaConfigFromHf(HF_CONFIG));
    const weights = llamaWeights(model);
    const missing = join(root, 'missing');
    await writeSafetensorsModel(
      missing,
      weights.filter((w) => w.name !== 'model.layers.1.mlp.up_proj.weight'),
    );
    writeFileSync(join(missing, 'config.json'), JSON.stringify(HF_CONFIG));
    await expect(loadLlama(missing)).rejects.toThrow(/missing tensor "model.layers.1.mlp.up_proj.weight"/);
    const wrong = join(root, 'wrong');
    await writeSafetensorsModel(wrong, weights);
    writeFileSync(join(wrong, 'config.json'), JSON.stringify({ ...HF_CONFIG, intermediate_size: 32 }));
    await expect(loadLlama(wrong)).rejects.toThrow(
      /tensor model.layers.0.mlp.gate_proj.weight has shape \[24, 16\], config.json implies \[32, 16\]/,
    );
    writeFileSync(join(wrong, 'config.json'), '{"model_type": "llama",');
    await expect(loadLlama(wrong)).rejects.toThrow(
      /config.json must be a valid config.json, got "invalid JSON"/,
    );
    await expect(loadLlama(join(root, 'nowhere'))).rejects.toThrow(
      /model directory must be a directory with config.json/,
    );
  });

  it('a NaN or an infinity in the weights is refused at load, naming the tensor; a BOM in config.json is read', async () => {
    const model = new LlamaForCausalLM(llamaConfigFromHf(HF_CONFIG));
    const weights = llamaWeights(model);
    const dir = join(root, 'nan');
    // An unused embedding row's NaN trained a whole run, which then could save nothing.
    const embedding = weights.find((w) => w.name === 'model.embed_tokens.weight')!;
    (embedding.data as Float32Array)[39 * 16 + 3] = Number.NaN;
    await writeSafetensorsModel(dir, weights);
    writeFileSync(join(dir, 'config.json'), `\uFEFF${JSON.stringify(HF_CONFIG)}`);
    await expect(loadLlama(dir)).rejects.toThrow(
      `${dir}: tensor model.embed_tokens.weight holds NaN (element 627 of 640): the weights are damaged or were saved from a diverged run; use a good copy of the model`,
    );
    (embedding.data as Float32Array)[39 * 16 + 3] = 0;
    (weights.find((w) => w.name === 'lm_head.weight')!.data as Float32Array)[0] = -Infinity;
    await writeSafetensorsModel(dir, weights);
    await expect(loadLlama(dir)).rejects.toThrow(
      /tensor lm_head.weight holds -Infinity \(element 0 of 640\)/,
    );
  });

  it('saves LoRA adapters as peft does', async () => {
    const model = new LlamaForCausalLM(llamaConfigFromHf(HF_CONFIG));
    model.addLora({ rank: 4, alpha: 8, dropout: 0.05, targetModules: ['q_proj', 'v_proj'] });
    const dir = join(root, 'adapter');
    await saveLoraAdapter(model, dir, 'tiny-llama');
    const file = await SafetensorsFile.open(join(dir, 'adapter_model.safetensors'));
    expect(file.names()).toContain('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight');
    expect(file.entry('base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight').shape).toEqual([
      8, 4,
    ]);
    await file.close();
    expect(JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8'))).toMatchObject({
      peft_type: 'LORA',
      r: 4,
      lora_alpha: 8,
      lora_dropout: 0.05,
      target_modules: ['q_proj', 'v_proj'],
    });
  });

  it('loads a saved LoRA adapter onto a fresh base: the same adapted outputs, merged or not', async () => {
    const trained = new LlamaForCausalLM(llamaConfigFromHf(HF_CONFIG), { seed: 3 });
    trained.addLora({ rank: 2, alpha: 4, targetModules: ['q_proj', 'down_proj'] }, 5);
    // B starts at zero; give the adapters values so that they change the outputs.
    for (const [name, variable] of trained.namedParameters)
      if (name.includes('lora_B')) variable.assign(tf.randomNormal(variable.shape, 0, 0.5, 'float32', 9));
    const dir = join(root, 'adapter-roundtrip');
    await saveLoraAdapter(trained, dir, 'tiny-llama');
    const ids = tf.tensor2d([[1, 5, 9, 3]], undefined, 'int32');
    const want = Array.from(trained.forward(ids).dataSync());
    const fresh = new LlamaForCausalLM(llamaConfigFromHf(HF_CONFIG), { seed: 3 });
    const plain = Array.from(fresh.forward(ids).dataSync());
    const config = await loadLoraAdapter(fresh, dir);
    expect(config).toMatchObject({ rank: 2, alpha: 4, baseModel: 'tiny-llama' });
    expect(fresh.lora?.targetModules).toEqual(['q_proj', 'down_proj']);
    const got = Array.from(fresh.forward(ids).dataSync());
    got.forEach((x, i) => expect(x).toBeCloseTo(want[i]!, 5));
    expect(got.some((x, i) => Math.abs(x - plain[i]!) > 1e-3)).toBe(true);
    fresh.mergeLora();
    Array.from(fresh.forward(ids).dataSync()).forEach((x, i) => expect(x).toBeCloseTo(want[i]!, 4));
    // On a model of another shape it names the tensor; a folder without an adapter says so.
    const other = new LlamaForCausalLM(
      llamaConfigFromHf({ ...HF_CONFIG, hidden_size: HF_CONFIG.hidden_size * 2 }),
    );
    await expect(loadLoraAdapter(other, dir)).rejects.toThrow(/lora_A\.weight must be \[2, /);
    await expect(loadLoraAdapter(other, root)).rejects.toThrow(/adapter_config\.json/);
    expect(await readLoraAdapterConfig(root)).toBeUndefined();
    for (const m of [trained, fresh, other]) m.dispose();
  });
});

describe('generate', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });

  it('greedy decoding picks the argmax and stops at a stop token; sampling is seeded', () => {
    const model = new LlamaForCausalLM(llamaConfigFromHf(HF_CONFIG), { seed: 9, initializerRange: 0.5 });
    const greedy = generate(model, [1, 5, 6], { maxNewTokens: 6 });
    expect(greedy).toHaveLength(6);
    const logits = model
      .forward(tf.tensor2d([[1, 5, 6]], undefined, 'int32'))
      .dataSync()
      .slice(2 * 40, 3 * 40);
    expect(greedy[0]).toBe(logits.indexOf(Math.max(...logits)));
    expect(generate(model, [1, 5, 6], { maxNewTokens: 6, stopTokenIds: [greedy[2]!] })).toEqual(
      greedy.slice(0, 2),
    );
    const a = generate(model, [1, 5, 6], { maxNewTokens: 8, temperature: 1, topP: 0.9, seed: 3 });
    expect(generate(model, [1, 5, 6], { maxNewTokens: 8, temperature: 1, topP: 0.9, seed: 3 })).toEqual(a);
    expect(generate(model, [1, 5, 6], { maxNewTokens: 6, temperature: 1, topP: 1e-6 })).toEqual(greedy);
    expect(() => generate(model, [], { maxNewTokens: 1 })).toThrow(/promptIds must be at least one token/);
  });
});
