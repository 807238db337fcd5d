import { describe, expect, it } from 'vitest';
import { llamaConfigFromHf, llamaConfigToHf, ropeInverseFrequencies, ropeTables } from '../src/index.js';

const LLAMA3 = {
  model_type: 'llama',
  vocab_size: 128,
  hidden_size: 64,
  intermediate_size: 96,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  rope_theta: 500000,
  rope_scaling: {
    rope_type: 'llama3',
    factor: 8,
    low_freq_factor: 1,
    high_freq_factor: 4,
    original_max_position_embeddings: 8192,
  },
};

describe('llamaConfigFromHf / llamaConfigToHf', () => {
  it('reads RoPE scaling and round-trips through config.json', () => {
    const config = llamaConfigFromHf(LLAMA3);
    expect(config.ropeScaling).toEqual({
      type: 'llama3',
      factor: 8,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositionEmbeddings: 8192,
    });
    expect(config.numKeyValueHeads).toBe(2);
    expect(config.headDim).toBe(16);
    expect(llamaConfigFromHf(llamaConfigToHf(config))).toEqual({ ...config, dtype: 'float32' });
  });

  it('rejects unsupported RoPE scaling with the supported ones', () => {
    expect(() =>
      llamaConfigFromHf({
        model_type: 'llama',
        vocab_size: 8,
        hidden_size: 8,
        intermediate_size: 8,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        rope_scaling: { rope_type: 'yarn', factor: 2 },
      }),
    ).toThrow(/rope_scaling.rope_type must be "llama3", "linear" or "default", got "yarn"/);
  });
});

describe('RoPE', () => {
  it('llama3 RoPE scaling keeps high frequencies, divides low ones by the factor', () => {
    const plain = ropeInverseFrequencies(128, 500000);
    const scaled = ropeInverseFrequencies(128, 500000, {
      type: 'llama3',
      factor: 8,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositionEmbeddings: 8192,
    });
    expect(scaled[0]).toBe(plain[0]);
    expect(scaled[63]).toBeCloseTo(plain[63]! / 8, 15);
  });

  it('linear scaling divides every frequency by the factor', () => {
    const plain = ropeInverseFrequencies(16, 10000);
    const scaled = ropeInverseFrequencies(16, 10000, { type: 'linear', factor: 4 });
    scaled.forEach((f, i) => expect(f).toBeCloseTo(plain[i]! / 4, 15));
  });

  it('tables hold cos and sin of position * frequency, row per position', () => {
    const inv = ropeInverseFrequencies(4, 10000); // [1, 0.01]
    const { cos, sin } = ropeTables(3, inv);
    expect(cos).toHaveLength(6);
    expect(cos[0]).toBe(1);
    expect(sin[0]).toBe(0);
    expect(cos[2 * 2 + 0]).toBeCloseTo(Math.cos(2), 6);
    expect(sin[2 * 2 + 1]).toBeCloseTo(Math.sin(0.02), 6);
  });
});
