import { describe, expect, it } from 'vitest';
import { BlockPartition, blockPrefixesForPreset } from '../src/index.js';
import { type FixtureModel, fixtureNames } from './fixtures/parameter-names.js';

function partition(model: FixtureModel, preset: 'layer' | 'module' | 'matrix') {
  return BlockPartition.create(fixtureNames(model), { preset });
}

describe('partition presets', () => {
  it('Llama 3-8B: by layer D = 32, by module D = 64, by matrix D = 224 (7L)', () => {
    expect(partition('llama3-8b', 'layer').blocks).toHaveLength(32);
    expect(partition('llama3-8b', 'module').blocks).toHaveLength(64);
    expect(partition('llama3-8b', 'matrix').blocks).toHaveLength(224);
  });

  it('by module: attention with its input norm, MLP with the post-attention norm', () => {
    const blocks = blockPrefixesForPreset(fixtureNames('llama3-8b'), 'module');
    expect(blocks[0]).toEqual(['model.layers.0.self_attn.', 'model.layers.0.input_layernorm.']);
    expect(blocks[1]).toEqual(['model.layers.0.mlp.', 'model.layers.0.post_attention_layernorm.']);
    const p = partition('llama3-8b', 'module');
    expect(p.blocks[0]!.parameterNames).toEqual([
      'model.layers.0.self_attn.q_proj.weight',
      'model.layers.0.self_attn.k_proj.weight',
      'model.layers.0.self_attn.v_proj.weight',
      'model.layers.0.self_attn.o_proj.weight',
      'model.layers.0.input_layernorm.weight',
    ]);
  });

  it('by matrix: one block per weight matrix, norms joining the first matrix they feed', () => {
    const blocks = blockPrefixesForPreset(fixtureNames('llama3-8b'), 'matrix');
    expect(blocks.slice(0, 7)).toEqual([
      ['model.layers.0.self_attn.q_proj.', 'model.layers.0.input_layernorm.'],
      ['model.layers.0.self_attn.k_proj.'],
      ['model.layers.0.self_attn.v_proj.'],
      ['model.layers.0.self_attn.o_proj.'],
      ['model.layers.0.mlp.gate_proj.', 'model.layers.0.post_attention_layernorm.'],
      ['model.layers.0.mlp.up_proj.'],
      ['model.layers.0.mlp.down_proj.'],
    ]);
  });

  it('Qwen2 by matrix keeps each bias with its matrix: D = 7L', () => {
    const p = partition('qwen2-0.5b', 'matrix');
    expect(p.blocks).toHaveLength(7 * 24);
    expect(p.blocks[0]!.parameterNames).toEqual([
      'model.layers.0.self_attn.q_proj.weight',
      'model.layers.0.self_attn.q_proj.bias',
      'model.layers.0.input_layernorm.weight',
    ]);
  });

  it('RoBERTa: module = attention / feed-forward (D = 2L); matrix = 6 per layer with each LayerNorm beside its dense', () => {
    expect(partition('roberta-large-classification', 'module').blocks).toHaveLength(48);
    const byModule = blockPrefixesForPreset(fixtureNames('roberta-large-classification'), 'module');
    expect(byModule[0]).toEqual(['roberta.encoder.layer.0.attention.']);
    expect(byModule[1]).toEqual(['roberta.encoder.layer.0.intermediate.', 'roberta.encoder.layer.0.output.']);
    const matrix = blockPrefixesForPreset(fixtureNames('roberta-large-classification'), 'matrix');
    expect(matrix).toHaveLength(6 * 24);
    expect(matrix[3]).toEqual([
      'roberta.encoder.layer.0.attention.output.dense.',
      'roberta.encoder.layer.0.attention.output.LayerNorm.',
    ]);
    expect(matrix[5]).toEqual([
      'roberta.encoder.layer.0.output.dense.',
      'roberta.encoder.layer.0.output.LayerNorm.',
    ]);
  });

  it('GPT-2: ln_1 goes with attention, ln_2 with the MLP', () => {
    const byModule = blockPrefixesForPreset(fixtureNames('gpt2'), 'module');
    expect(byModule).toHaveLength(24);
    expect(byModule[0]).toEqual(['transformer.h.0.ln_1.', 'transformer.h.0.attn.']);
    expect(byModule[1]).toEqual(['transformer.h.0.ln_2.', 'transformer.h.0.mlp.']);
    expect(blockPrefixesForPreset(fixtureNames('gpt2'), 'matrix')).toHaveLength(48);
  });

  it('peft LoRA: the matrix preset groups base_layer, lora_A and lora_B of one projection', () => {
    const p = BlockPartition.create(fixtureNames('tinyllama-1.1b-peft-lora'), { preset: 'matrix' });
    expect(p.blocks).toHaveLength(7 * 22);
    expect(p.blocks[0]!.parameterNames).toEqual([
      'base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight',
      'base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight',
      'base_model.model.model.layers.0.self_attn.q_proj.lora_B.default.weight',
      'base_model.model.model.layers.0.input_layernorm.weight',
    ]);
  });

  it('non-layer blocks follow includeEmbedding / includeLmHead in every preset', () => {
    for (const preset of ['module', 'matrix'] as const) {
      const blocks = blockPrefixesForPreset(fixtureNames('llama3-8b'), preset, {
        includeEmbedding: true,
        includeLmHead: true,
      });
      expect(blocks[0]).toEqual(['model.embed_tokens.']);
      expect(blocks[blocks.length - 1]).toEqual(['model.norm.weight', 'lm_head.weight']);
    }
  });
});
