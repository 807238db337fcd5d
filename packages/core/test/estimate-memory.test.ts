import { describe, expect, it } from 'vitest';
import {
  BUILTIN_CONFIGS,
  type DecoderArchitecture,
  estimateActivationBytes,
  estimateMemory,
  parametersOf,
  parseHfConfig,
  seedMemoryEstimate,
  shardShare,
} from '../src/index.js';

const llama3 = parametersOf(parseHfConfig(BUILTIN_CONFIGS['llama3-8b'].config), 'bfloat16');
const M = 8_030_261_248;
const LAYER = 218_112_000; // 2 * 4096^2 + 2 * 4096 * 1024 + 3 * 4096 * 14336 + 2 * 4096

describe('estimateMemory, Llama 3-8B in bf16, against hand-computed figures', () => {
  it('full mixed-precision Adam: 18 bytes per parameter', () => {
    const e = estimateMemory({ method: 'adam', parameters: llama3 });
    expect(e).toMatchObject({
      weights: 2 * M,
      masters: 4 * M,
      gradients: 4 * M,
      optimizerState: 8 * M,
      total: 18 * M,
      trainedElements: M,
    });
    expect(e.total).toBe(144_544_702_464);
  });

  it('BAdam by layer: about 16 GB of weights plus about 3.5-4 GB for the active block', () => {
    const e = estimateMemory({ method: 'badam', parameters: llama3 });
    expect(e).toMatchObject({
      weights: 16_060_522_496,
      masters: 4 * LAYER,
      gradients: 4 * LAYER,
      optimizerState: 8 * LAYER,
      trainedElements: LAYER,
    });
    expect(e.total).toBe(16_060_522_496 + 16 * LAYER);
    const seed = seedMemoryEstimate(M, 32);
    expect(seed.badam).toBe(2 * M + (16 * M) / 32);
    expect(seed.activeBlock / 1e9).toBeCloseTo(4.015, 3);
    expect(seed.adam).toBe(18 * M);
  });

  it('BAdam accounts the block it is given; the lm_head block is the largest when included', () => {
    const blocks = [
      llama3.filter((p) => p.name.startsWith('model.layers.0.')).map((p) => p.name),
      ['model.norm.weight', 'lm_head.weight'],
    ];
    expect(estimateMemory({ method: 'badam', parameters: llama3, blocks }).trainedElements).toBe(
      4096 + 128256 * 4096,
    );
    expect(
      estimateMemory({ method: 'badam', parameters: llama3, blocks, activeBlock: 0 }).trainedElements,
    ).toBe(LAYER);
  });

  it('BAdam over 8 ranks, ZeRO-3 style: 1/8 of the weights and of the block state, the whole gradient of a micro-batch, two parts gathered', () => {
    const one = estimateMemory({ method: 'badam', parameters: llama3 });
    const ranks = Array.from({ length: 8 }, (_, rank) =>
      estimateMemory({ method: 'badam', parameters: llama3, worldSize: 8, rank }),
    );
    // Every rank's shares add up to one process's: each element is held once.
    expect(ranks.reduce((n, e) => n + e.weights, 0)).toBe(one.weights);
    expect(ranks.reduce((n, e) => n + e.masters, 0)).toBe(one.masters);
    expect(ranks.reduce((n, e) => n + e.optimizerState, 0)).toBe(one.optimizerState);
    for (const e of ranks) {
      expect(Math.abs(e.weights - one.weights / 8)).toBeLessThan(1000);
      expect(e.gradients).toBeCloseTo((4 * LAYER) / 8 + 4 * LAYER, -3);
      // The two largest parts: the embedding and lm_head, 128256 x 4096 bf16 each.
      expect(e.gathered).toBe(2 * 2 * 128256 * 4096);
      expect(e.trainedElements).toBe(LAYER);
    }
    expect(one.gathered).toBe(0);
    expect(shardShare(10, 3, 0) + shardShare(10, 3, 1) + shardShare(10, 3, 2)).toBe(10);
    expect(shardShare(2, 3, 2)).toBe(2); // smaller than the world: whole on every rank
    expect(() => estimateMemory({ method: 'lora', parameters: llama3, worldSize: 2 })).toThrow(
      'worldSize must be 1 for lora (only adam and badam are sharded), got 2',
    );
  });

  it('LoRA r = 8 on every linear layer: 20,971,520 fp32 adapter parameters', () => {
    const perLayer = 8 * (2 * (4096 + 4096) + 2 * (4096 + 1024) + 3 * (4096 + 14336));
    expect(perLayer * 32).toBe(20_971_520);
    const e = estimateMemory({ method: 'lora', parameters: llama3, loraRank: 8 });
    expect(e).toMatchObject({
      weights: 2 * M + 4 * 20_971_520,
      masters: 0,
      gradients: 4 * 20_971_520,
      optimizerState: 8 * 20_971_520,
    });
  });

  it('BlockOptimizerRatio 0.1: dense bf16 gradients, moments for floor(n * 0.1) entries per parameter', () => {
    const perLayer =
      2 * Math.floor(4096 * 4096 * 0.1) +
      2 * Math.floor(4096 * 1024 * 0.1) +
      3 * Math.floor(4096 * 14336 * 0.1) +
      2 * 409;
    const e = estimateMemory({ method: 'ratio', parameters: llama3, updateRatio: 0.1 });
    expect(e.trainedElements).toBe(32 * perLayer);
    expect(e.gradients).toBe(2 * 32 * LAYER);
    expect(e.optimizerState).toBe(8 * 32 * perLayer);
    const scatter = estimateMemory({
      method: 'ratio',
      parameters: llama3,
      updateRatio: 0.1,
      maskMode: 'scatter',
    });
    expect(scatter.optimizerState).toBe(12 * 32 * perLayer);
  });

  it('fp32 weights (tfjs): BAdam is 4M + 12 M_block, Adam 16M — no masters', () => {
    const tiny = parametersOf(parseHfConfig(BUILTIN_CONFIGS['tinyllama-1.1b'].config), 'float32');
    const m = 1_100_048_384;
    const block = 44_044_288;
    expect(estimateMemory({ method: 'adam', parameters: tiny }).total).toBe(16 * m);
    const e = estimateMemory({ method: 'badam', parameters: tiny });
    expect(e.masters).toBe(0);
    expect(e.total).toBe(4 * m + 12 * block);
  });

  it('rejects bad input naming the option', () => {
    expect(() => estimateMemory({ method: 'sgd' as 'adam', parameters: llama3 })).toThrow(
      /method must be one of/,
    );
    expect(() => estimateMemory({ method: 'adam', parameters: [] })).toThrow(
      /parameters must be a non-empty array/,
    );
    expect(() => estimateMemory({ method: 'ratio', parameters: llama3, updateRatio: 0 })).toThrow(
      /updateRatio must be/,
    );
    expect(() =>
      estimateMemory({ method: 'lora', parameters: llama3, loraTargets: ['model.norm.weight'] }),
    ).toThrow(/loraTargets must be names of 2-D weights/);
  });
});

describe('estimateActivationBytes', () => {
  const tiny: DecoderArchitecture = {
    kind: 'decoder',
    family: 'llama',
    vocabSize: 10,
    hiddenSize: 8,
    intermediateSize: 16,
    numLayers: 2,
    numHeads: 2,
    numKeyValueHeads: 1,
    headDim: 4,
    maxPositionEmbeddings: 16,
    tieWordEmbeddings: false,
    qkvBias: false,
    outputBias: false,
    mlpBias: false,
  };

  it('decoder, bf16, flash attention: per token e(5h + (a + 2kv)d + 4i) + 4a per layer, e h + 8V head', () => {
    // per layer per token: 2 * (40 + 16 + 64) + 8 = 248; embedding 16; head 16 + 80 = 96; 3 tokens.
    expect(estimateActivationBytes(tiny, { batchSize: 1, seqLength: 3, dtype: 'bfloat16' })).toBe(
      3 * (16 + 2 * 248 + 96),
    );
    // Checkpointing keeps each layer's input plus one layer's full set.
    expect(
      estimateActivationBytes(tiny, {
        batchSize: 1,
        seqLength: 3,
        dtype: 'bfloat16',
        gradientCheckpointing: true,
      }),
    ).toBe(3 * (16 + 2 * 2 * 8 + 248 + 96));
    // Eager attention keeps a * s probabilities instead of the log-sum-exp.
    expect(
      estimateActivationBytes(tiny, { batchSize: 2, seqLength: 3, dtype: 'bfloat16', attention: 'eager' }),
    ).toBe(6 * (16 + 2 * (240 + 2 * 2 * 3) + 96));
  });

  it('encoder follows Korthikanti et al.: 34h + 5as bytes at 16 bit when i = 4h', () => {
    const roberta = parseHfConfig(BUILTIN_CONFIGS['roberta-large'].config, {
      head: 'sequence-classification',
    });
    const h = 1024;
    const perToken = 2 * h + 24 * (34 * h + 5 * 16 * 128) + 2 * h;
    expect(
      estimateActivationBytes(roberta, {
        batchSize: 1,
        seqLength: 128,
        dtype: 'float16',
        attention: 'eager',
      }),
    ).toBe(128 * perToken);
  });
});
