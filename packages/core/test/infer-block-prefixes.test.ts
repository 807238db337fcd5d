import { describe, expect, it } from 'vitest';
import { BlockPartition, inferBlockPrefixes } from '../src/index.js';
import { FIXTURE_MODELS, type FixtureModel, fixtureNames } from './fixtures/parameter-names.js';

interface Expected {
  layers: number;
  layerPrefix: (i: number) => string;
  embedding: string[];
  lastBlock: string[];
  /** Parameters covered by neither a layer nor the embedding prefixes. */
}

const EXPECTED: Record<FixtureModel, Expected> = {
  'llama3-8b': {
    layers: 32,
    layerPrefix: (i) => `model.layers.${i}.`,
    embedding: ['model.embed_tokens.'],
    lastBlock: ['model.norm.weight', 'lm_head.weight'],
  },
  'llama2-7b': {
    layers: 32,
    layerPrefix: (i) => `model.layers.${i}.`,
    embedding: ['model.embed_tokens.'],
    lastBlock: ['model.norm.weight', 'lm_head.weight'],
  },
  'tinyllama-1.1b': {
    layers: 22,
    layerPrefix: (i) => `model.layers.${i}.`,
    embedding: ['model.embed_tokens.'],
    lastBlock: ['model.norm.weight', 'lm_head.weight'],
  },
  'qwen2-0.5b': {
    layers: 24,
    layerPrefix: (i) => `model.layers.${i}.`,
    embedding: ['model.embed_tokens.'],
    // Tied embeddings: there is no lm_head parameter of its own.
    lastBlock: ['model.norm.weight'],
  },
  'tinyllama-1.1b-peft-lora': {
    layers: 22,
    layerPrefix: (i) => `base_model.model.model.layers.${i}.`,
    embedding: ['base_model.model.model.embed_tokens.'],
    lastBlock: ['base_model.model.model.norm.weight', 'base_model.model.lm_head.weight'],
  },
  'roberta-large-classification': {
    layers: 24,
    layerPrefix: (i) => `roberta.encoder.layer.${i}.`,
    // One prefix covers word, position and token-type embeddings and the embedding LayerNorm.
    embedding: ['roberta.embeddings.'],
    lastBlock: [
      'classifier.dense.weight',
      'classifier.dense.bias',
      'classifier.out_proj.weight',
      'classifier.out_proj.bias',
    ],
  },
  gpt2: {
    layers: 12,
    layerPrefix: (i) => `transformer.h.${i}.`,
    embedding: ['transformer.wte.', 'transformer.wpe.'],
    lastBlock: ['transformer.ln_f.weight', 'transformer.ln_f.bias'],
  },
};

const COMBINATIONS = [
  { includeEmbedding: false, includeLmHead: false },
  { includeEmbedding: true, includeLmHead: false },
  { includeEmbedding: false, includeLmHead: true },
  { includeEmbedding: true, includeLmHead: true },
];

describe('inferBlockPrefixes on published architectures', () => {
  for (const model of FIXTURE_MODELS) {
    for (const options of COMBINATIONS) {
      it(`${model} with includeEmbedding=${options.includeEmbedding}, includeLmHead=${options.includeLmHead}`, () => {
        const names = fixtureNames(model);
        const expected = EXPECTED[model];
        const layerBlocks = Array.from({ length: expected.layers }, (_, i) => [expected.layerPrefix(i)]);
        const want = [
          ...(options.includeEmbedding ? [expected.embedding] : []),
          ...layerBlocks,
          ...(options.includeLmHead ? [expected.lastBlock] : []),
        ];
        const blocks = inferBlockPrefixes(names, options);
        expect(blocks).toEqual(want);

        // The partition built on it is valid: every parameter in at most one block, and exactly the
        // non-included groups frozen. The embedding never lands in the last block.
        const partition = BlockPartition.create(names, options);
        const embeddingNames = names.filter((n) => expected.embedding.some((p) => n.includes(p)));
        const lastNames = names.filter((n) => expected.lastBlock.includes(n));
        const frozen = [
          ...(options.includeEmbedding ? [] : embeddingNames),
          ...(options.includeLmHead ? [] : lastNames),
        ];
        expect(new Set(partition.frozenNames)).toEqual(new Set(frozen));
        const counted = partition.blocks.reduce((n, b) => n + b.parameterNames.length, 0);
        expect(counted + partition.frozenNames.length).toBe(names.length);
        if (options.includeLmHead) {
          const last = partition.blocks[partition.blocks.length - 1]!;
          expect(last.parameterNames.some((n) => embeddingNames.includes(n))).toBe(false);
        }
      });
    }
  }

  it('layer indices are whole segments: layers.1. never captures layers.10.', () => {
    const names = Array.from({ length: 12 }, (_, i) => `model.layers.${i}.mlp.up_proj.weight`);
    const partition = BlockPartition.create(names);
    expect(partition.blocks[1]!.parameterNames).toEqual(['model.layers.1.mlp.up_proj.weight']);
    expect(partition.blocks[10]!.parameterNames).toEqual(['model.layers.10.mlp.up_proj.weight']);
  });

  it('recognises blocks.<i>. and places an embedding block where embeddings first appear', () => {
    const names = [
      'patch_embed.proj.weight',
      'blocks.0.attn.qkv.weight',
      'blocks.1.attn.qkv.weight',
      'head.weight',
    ];
    expect(inferBlockPrefixes(names, { includeEmbedding: true, includeLmHead: true })).toEqual([
      ['patch_embed.'],
      ['blocks.0.'],
      ['blocks.1.'],
      ['head.weight'],
    ]);
  });

  it('does not add an empty last block when there are no other parameters', () => {
    expect(inferBlockPrefixes(['layers.0.w', 'layers.1.w'], { includeLmHead: true })).toEqual([
      ['layers.0.'],
      ['layers.1.'],
    ]);
  });
});
