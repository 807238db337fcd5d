import { describe, expect, it } from 'vitest';
import { BadamOptionError, BadamPartitionError, BlockPartition, isNoDecayParameter } from '../src/index.js';
import { fixtureNames } from './fixtures/parameter-names.js';

const llama = fixtureNames('tinyllama-1.1b');

describe('BlockPartition validation', () => {
  it('a prefix that matches nothing is an error naming it', () => {
    expect(() =>
      BlockPartition.create(llama, { blockPrefixList: [['model.layers.0.'], ['model.layer.1.']] }),
    ).toThrow(BadamPartitionError);
    expect(() =>
      BlockPartition.create(llama, { blockPrefixList: [['model.layers.0.'], ['model.layer.1.']] }),
    ).toThrow(/block 1 \[0\] prefix "model.layer.1." matches no parameter/);
    expect(() => BlockPartition.create(llama, { activeModules: ['classifier.'] })).toThrow(
      /activeModules\[0\] prefix "classifier." matches no parameter/,
    );
  });

  it('a parameter in two blocks is an error naming the parameter and both blocks', () => {
    expect(() =>
      BlockPartition.create(llama, { blockPrefixList: [['model.layers.0.'], ['model.layers.0.mlp.']] }),
    ).toThrow(
      /parameter "model.layers.0.mlp.gate_proj.weight" is in block 0 \(model.layers.0.\) and block 1/,
    );
  });

  it('a prefix without a trailing dot is a warning (layers.1 also matches layers.10..19)', () => {
    const p = BlockPartition.create(llama, { blockPrefixList: [['model.layers.1'], ['model.layers.2.']] });
    expect(p.warnings).toHaveLength(1);
    expect(p.warnings[0]).toMatch(/"model.layers.1" has no trailing dot/);
    // ...and indeed it swallowed layers 10..19 too.
    expect(p.blocks[0]!.parameterNames.some((n) => n.startsWith('model.layers.15.'))).toBe(true);
  });

  it('full parameter names as prefixes (the last block) give no warning', () => {
    expect(BlockPartition.create(llama, { includeLmHead: true }).warnings).toEqual([]);
  });

  it('rejects malformed options with the option named', () => {
    expect(() => BlockPartition.create(llama, { blockPrefixList: [] })).toThrow(BadamOptionError);
    expect(() => BlockPartition.create(llama, { blockPrefixList: [[]] })).toThrow(
      /blockPrefixList\[0\] must be/,
    );
    expect(() => BlockPartition.create(llama, { blockPrefixList: [['']] })).toThrow(
      /blockPrefixList\[0\]\[0\]/,
    );
    expect(() => BlockPartition.create(llama, { preset: 'row' as 'layer' })).toThrow(
      /preset must be one of layer, module, matrix, model, got "row"/,
    );
    expect(() =>
      BlockPartition.create(llama, { preset: 'layer', blockPrefixList: [['model.layers.0.']] }),
    ).toThrow(/preset must be absent when blockPrefixList is given/);
    expect(() => BlockPartition.create(llama, { includeLmHead: 'yes' as unknown as boolean })).toThrow(
      /includeLmHead must be true or false/,
    );
  });

  it('a model without layers and without included groups has no blocks: an error that says what to do', () => {
    expect(() => BlockPartition.create(['w1', 'w2'])).toThrow(/no blocks.*pass blockPrefixList/);
  });

  it('activeModules are trainable in every block and leave the blocks they overlap', () => {
    const names = fixtureNames('roberta-large-classification');
    const p = BlockPartition.create(names, { includeLmHead: true, activeModules: ['classifier.'] });
    expect(p.activeModuleNames).toEqual([
      'classifier.dense.weight',
      'classifier.dense.bias',
      'classifier.out_proj.weight',
      'classifier.out_proj.bias',
    ]);
    const head = p.blocks[p.blocks.length - 1]!;
    expect(head.parameterNames).toEqual([]);
    expect(p.eligibleBlocks).toHaveLength(24);
    expect(p.trainableNamesOf(0).slice(-4)).toEqual(p.activeModuleNames);
  });

  it('LoRA mode: only lora parameters of a block train; blocks without any are not eligible', () => {
    const names = fixtureNames('tinyllama-1.1b-peft-lora');
    const p = BlockPartition.create(names, { includeEmbedding: true, includeLmHead: true });
    expect(p.loraMode).toBe(true);
    expect(p.blocks[1]!.trainableNames).toEqual([
      'base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight',
      'base_model.model.model.layers.0.self_attn.q_proj.lora_B.default.weight',
      'base_model.model.model.layers.0.self_attn.v_proj.lora_A.default.weight',
      'base_model.model.model.layers.0.self_attn.v_proj.lora_B.default.weight',
    ]);
    // Embedding and head blocks have no lora parameters: skipped.
    expect(p.eligibleBlocks).toEqual(Array.from({ length: 22 }, (_, i) => i + 1));
  });

  it('fingerprint changes with the partition', () => {
    const a = BlockPartition.create(llama).fingerprint();
    expect(BlockPartition.create(llama).fingerprint()).toBe(a);
    expect(BlockPartition.create(llama, { includeLmHead: true }).fingerprint()).not.toBe(a);
  });

  it('blockOf finds the block of a parameter', () => {
    const p = BlockPartition.create(llama);
    expect(p.blockOf('model.layers.3.mlp.up_proj.weight')).toBe(3);
    expect(p.blockOf('lm_head.weight')).toBeUndefined();
  });
});

describe('isNoDecayParameter', () => {
  it.each([
    ['model.layers.0.input_layernorm.weight', true],
    ['model.layers.0.post_attention_layernorm.weight', true],
    ['model.norm.weight', true],
    ['roberta.encoder.layer.0.output.LayerNorm.weight', true],
    ['transformer.h.0.ln_1.weight', true],
    ['transformer.ln_f.weight', true],
    ['model.layers.0.self_attn.q_proj.bias', true],
    ['model.layers.0.self_attn.q_norm.weight', true],
    ['model.layers.0.self_attn.q_proj.weight', false],
    ['lm_head.weight', false],
    ['model.embed_tokens.weight', false],
    ['base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight', false],
  ])('%s -> %s', (name, noDecay) => {
    expect(isNoDecayParameter(name)).toBe(noDecay);
  });
});
