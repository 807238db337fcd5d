import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { BUILTIN_CONFIGS, parametersOf, parseHfConfig, totalElements } from '../src/index.js';
import { fixtureParameters } from './fixtures/parameter-names.js';

const configFixture = (name: string) =>
  JSON.parse(readFileSync(new URL(`./fixtures/configs/${name}/config.json`, import.meta.url), 'utf8'));

describe('parametersOf(parseHfConfig(config.json))', () => {
  it.each([
    ['llama3-8b', 'llama3-8b'],
    ['llama2-7b', 'llama2-7b'],
    ['tinyllama-1.1b', 'tinyllama-1.1b'],
    ['qwen2-0.5b', 'qwen2-0.5b'],
  ] as const)('built-in %s lists the names and shapes of the written-out fixture', (builtin, fixture) => {
    const params = parametersOf(parseHfConfig(BUILTIN_CONFIGS[builtin].config), 'bfloat16');
    expect(params).toEqual(fixtureParameters(fixture));
  });

  it('RoBERTa-large with a sequence-classification head matches the fixture', () => {
    const params = parametersOf(
      parseHfConfig(configFixture('roberta-large'), { head: 'sequence-classification' }),
      'bfloat16',
    );
    expect(params).toEqual(fixtureParameters('roberta-large-classification'));
  });

  it.each([
    ['llama3-8b', 8_030_261_248],
    ['llama2-7b', 6_738_415_616],
    ['tinyllama-1.1b', 1_100_048_384],
    ['mistral-7b', 7_241_732_096],
    ['qwen2-0.5b', 494_032_768],
  ] as const)('%s has its published parameter count', (builtin, count) => {
    expect(totalElements(parametersOf(parseHfConfig(BUILTIN_CONFIGS[builtin].config), 'bfloat16'))).toBe(
      count,
    );
  });

  it('RoBERTa-large: the bare model with pooler has its published 355,359,744 parameters', () => {
    const model = parseHfConfig(configFixture('roberta-large'), { head: 'model' });
    expect(totalElements(parametersOf(model, 'float32'))).toBe(355_359_744);
    // The MLM head of the checkpoint: dense + LayerNorm + output bias (its decoder is tied to the embedding).
    const mlm = parametersOf(parseHfConfig(configFixture('roberta-large')), 'float32');
    expect(totalElements(mlm)).toBe(355_359_744 - 1_049_600 + 1_049_600 + 2048 + 50_265);
    expect(mlm.slice(-5).map((p) => p.name)).toEqual([
      'lm_head.bias',
      'lm_head.dense.weight',
      'lm_head.dense.bias',
      'lm_head.layer_norm.weight',
      'lm_head.layer_norm.bias',
    ]);
  });

  it('Qwen2-7B from its config.json: q/k/v biases, untied head, hand-counted total', () => {
    const arch = parseHfConfig(configFixture('qwen2-7b'));
    expect(arch).toMatchObject({
      family: 'qwen2',
      qkvBias: true,
      outputBias: false,
      headDim: 128,
      numKeyValueHeads: 4,
    });
    const h = 3584;
    const kv = 512;
    const layer = h * h + h + 2 * (h * kv + kv) + h * h + 3 * h * 18944 + 2 * h;
    expect(totalElements(parametersOf(arch, 'bfloat16'))).toBe(2 * 152064 * h + 28 * layer + h);
  });

  it('reads torch_dtype and Llama attention_bias / mlp_bias', () => {
    expect(parseHfConfig(configFixture('llama3-8b')).dtype).toBe('bfloat16');
    const biased = parseHfConfig({ ...configFixture('llama3-8b'), attention_bias: true, mlp_bias: true });
    const names = parametersOf(biased, 'float32').map((p) => p.name);
    expect(names).toContain('model.layers.0.self_attn.o_proj.bias');
    expect(names).toContain('model.layers.0.mlp.down_proj.bias');
  });

  it('rejects what it cannot describe, naming the file and the field', () => {
    expect(() => parseHfConfig(configFixture('gpt2'), { source: 'gpt2/config.json' })).toThrow(
      /gpt2\/config.json model_type must be one of llama, mistral, qwen2, roberta, xlm-roberta, bert, got "gpt2"/,
    );
    const { hidden_size: _, ...noHidden } = configFixture('llama3-8b');
    expect(() => parseHfConfig(noHidden)).toThrow(
      'config.json hidden_size must be a positive integer, got undefined',
    );
    expect(() => parseHfConfig({ ...configFixture('llama3-8b'), num_key_value_heads: 5 })).toThrow(
      /num_key_value_heads must be a divisor of num_attention_heads \(32\), got 5/,
    );
    expect(() => parseHfConfig({ ...configFixture('llama3-8b'), torch_dtype: 'int8' })).toThrow(
      /torch_dtype must be one of/,
    );
    expect(() => parseHfConfig([1, 2])).toThrow(/must be a JSON object/);
  });
});
