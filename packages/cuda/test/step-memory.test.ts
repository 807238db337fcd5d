import { BlockOptimizer, type LlamaConfig, llamaConfigFromHf, llamaStepMemory } from '@badam/core';
import { afterAll, describe, expect, it } from 'vitest';
import { CudaBlockBackend, Device, DeviceLlama } from '../src/index.js';

// packages/core's llamaStepMemory is the memory model badam-estimate answers from, and the 8B / TinyLlama
// figures in docs/benchmarks.md come from it. It claims the allocator's exact accounting of a DeviceLlama
// step and CudaBlockBackend's update; here the CPU device (whose allocator accounts as the GPU's: the same
// bindings allocate the same workspaces) runs steps and the measured peak must equal it to the byte, on
// small configs and on configs scaled from Llama 3-8B (head dim 128, GQA 4) and TinyLlama (head dim 64, GQA 8).
const device = Device.cpu();
afterAll(() => device.emptyCache());

function config(fields: Record<string, unknown>): LlamaConfig {
  return llamaConfigFromHf({ model_type: 'llama', max_position_embeddings: 64, ...fields });
}

const CONFIGS: Array<[string, LlamaConfig]> = [
  [
    'small, GQA 4 / 2, biases, tied',
    config({
      vocab_size: 97,
      hidden_size: 64,
      intermediate_size: 96,
      num_hidden_layers: 3,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      tie_word_embeddings: true,
      attention_bias: true,
      mlp_bias: true,
    }),
  ],
  [
    'Llama 3-8B scaled: head dim 128, GQA 2 / 1, intermediate 3.5 H, untied',
    config({
      vocab_size: 1003,
      hidden_size: 256,
      intermediate_size: 896,
      num_hidden_layers: 2,
      num_attention_heads: 2,
      num_key_value_heads: 1,
      tie_word_embeddings: false,
    }),
  ],
  [
    'TinyLlama scaled: head dim 64, GQA 4 / 1, intermediate 2.75 H, untied',
    config({
      vocab_size: 503,
      hidden_size: 256,
      intermediate_size: 704,
      num_hidden_layers: 3,
      num_attention_heads: 4,
      num_key_value_heads: 1,
      tie_word_embeddings: false,
    }),
  ],
];

/** The parameter names of a block given by prefixes (as BlockOptimizer's blockPrefixList). */
function blockOf(names: readonly string[], prefixes: readonly string[]): string[] {
  return names.filter((n) => prefixes.some((p) => n.includes(p)));
}

interface Run {
  dtype: 'bfloat16' | 'float32';
  checkpointing: boolean;
  prefixes: string[];
  accumulation: number;
}

/** Runs `accumulation` micro-batches and the update; returns the measured peak and the model's. */
function measure(cfg: LlamaConfig, run: Run): { measured: number; modelled: number } {
  const [b, s] = [2, 17];
  const model = DeviceLlama.create(device, cfg, {
    dtype: run.dtype,
    gradientCheckpointing: run.checkpointing,
    lossChunkTokens: 9,
  });
  const parameters = model.parameters();
  const backend = new CudaBlockBackend(device, parameters);
  const names = parameters.map((p) => p.name);
  const prefixes = run.prefixes.filter((p) => names.some((n) => n.includes(p)));
  const optimizer = new BlockOptimizer(
    {
      baseOptimizer: { type: 'adamw', learningRate: 1e-3 },
      namedParameters: parameters,
      blockPrefixList: [prefixes],
      switchBlockEvery: 100,
      gradientAccumulationSteps: run.accumulation,
      clipGradNorm: 1,
      verbose: 0,
    },
    backend,
  );
  try {
    const ids = Int32Array.from({ length: b * s }, (_, i) => (i * 7) % cfg.vocabSize);
    const labels = ids.map((x, i) => (i % s === 5 ? -100 : x));
    const batch = { batchSize: b, seqLen: s, inputIds: ids, labels, lengths: Int32Array.of(s, s - 4) };
    let labelled = 0;
    for (let r = 0; r < b; r++)
      for (let p = 0; p + 1 < s; p++) if (labels[r * s + p + 1] !== -100) labelled++;
    device.resetPeaks();
    for (let m = 0; m < run.accumulation; m++) {
      model.lossAndGradients(batch, optimizer.trainableNames, (name) => backend.gradientOf(name));
      optimizer.step();
    }
    const workload = {
      batchSize: b,
      seqLength: s,
      dtype: run.dtype,
      gradientCheckpointing: run.checkpointing,
      trainable: blockOf(names, prefixes),
      labelledRows: labelled,
      paddedRows: true,
      lossChunkTokens: 9,
    };
    const arch = { ...cfg, kind: 'decoder' as const };
    // The first micro-batch allocates the gradients; later ones find them.
    const modelled = Math.max(
      llamaStepMemory(arch, workload).peak,
      run.accumulation > 1 ? llamaStepMemory(arch, { ...workload, gradientsHeld: true }).peak : 0,
    );
    return { measured: device.memory().peakInUse, modelled };
  } finally {
    optimizer.dispose();
    backend.dispose();
    model.dispose();
  }
}

describe("the Llama step memory model (core's llamaStepMemory) against the CPU device's allocator", () => {
  for (const [i, [name, cfg]] of CONFIGS.entries()) {
    // Every block shape and both dtypes on the small config; the scaled ones (whose bf16 attention takes the
    // tensor-core path's workspace on a GPU) in bf16, the bottom layer and everything.
    const last = cfg.numLayers - 1;
    const blocks =
      i === 0
        ? [
            ['model.layers.0.'],
            [`model.layers.${last}.`, 'model.norm.', 'lm_head.'],
            ['model.embed_tokens.'],
            ['model.', 'lm_head.'],
          ]
        : [['model.layers.0.'], ['model.', 'lm_head.']];
    const dtypes = i === 0 ? (['bfloat16', 'float32'] as const) : (['bfloat16'] as const);
    it(`${name}: blocks, checkpointing on and off, ${dtypes.join(' and ')}: the peak to the byte`, () => {
      for (const dtype of dtypes)
        for (const checkpointing of [true, false])
          for (const prefixes of blocks) {
            const { measured, modelled } = measure(cfg, { dtype, checkpointing, prefixes, accumulation: 1 });
            expect(measured, `${dtype}, checkpointing ${checkpointing}, ${prefixes.join(' ')}`).toBe(
              modelled,
            );
          }
    });
  }

  it('gradient accumulation: later micro-batches hold the gradients through their forward', () => {
    const [, cfg] = CONFIGS[1]!;
    const { measured, modelled } = measure(cfg, {
      dtype: 'bfloat16',
      checkpointing: true,
      prefixes: ['model.layers.0.'],
      accumulation: 2,
    });
    expect(measured).toBe(modelled);
  });

  it('fails when the step changes what it allocates (a planted extra scratch buffer is seen)', () => {
    const [, cfg] = CONFIGS[0]!;
    const run: Run = {
      dtype: 'bfloat16',
      checkpointing: true,
      prefixes: ['model.layers.0.'],
      accumulation: 1,
    };
    const clean = measure(cfg, run);
    const extra = device.zeros([3], 'float32', 'workspace'); // 12 bytes the model does not know of
    try {
      const planted = measure(cfg, run);
      expect(planted.measured).toBe(clean.measured + 12);
      expect(planted.measured).not.toBe(planted.modelled);
    } finally {
      extra.free();
    }
  });
});
