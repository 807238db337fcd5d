import { describe, expect, it } from 'vitest';
import {
  BadamOptionError,
  BlockOptimizer,
  checkPlannedParameters,
  estimateMemory,
  estimatePlanMemory,
  FINE_TUNING_METHODS,
  type FineTuningMethod,
  isLoraParameter,
  isTrainedByRatio,
  loraAdaptedModuleOf,
  type NamedParameterInfo,
  planTraining,
  ReferenceBackend,
  trainedElements,
} from '../src/index.js';
import { fixtureParameters } from './fixtures/parameter-names.js';
import { tinyLlamaParameters } from './fixtures/tiny-llama.js';

const parameters = tinyLlamaParameters({ layers: 3 });
const names = parameters.map((p) => p.name);
const layer = (i: number) => names.filter((n) => n.startsWith(`model.layers.${i}.`));
const quiet = () => {};

function plan(method: FineTuningMethod, extra: Partial<Parameters<typeof planTraining>[0]> = {}) {
  return planTraining({
    settings: { method, learningRate: 1e-3, switchBlockEvery: 5, ...extra.settings },
    parameters,
    logFn: quiet,
    ...extra,
  });
}

/** The groups a BlockOptimizer built from a plan really trains: what the plan's partition must say. */
function optimizerGroups(p: ReturnType<typeof planTraining>, params: readonly NamedParameterInfo[]) {
  if (p.optimizer.kind !== 'block') throw new Error('a BlockOptimizer plan');
  const backend = new ReferenceBackend(
    params.map((q) => ({ ...q, values: new Float32Array(q.shape.reduce((a, b) => a * b, 1)) })),
  );
  const optimizer = new BlockOptimizer({ ...p.optimizer.options, namedParameters: params }, backend);
  const groups = optimizer.partition.eligibleBlocks.map((b) => optimizer.partition.trainableNamesOf(b));
  optimizer.dispose();
  return groups;
}

describe('planTraining: the partition each method produces', () => {
  it('BAdam: one group per layer block, the head block with includeLmHead, active modules in every group', () => {
    const badam = plan('block');
    expect(badam.partition.groups).toEqual([layer(0), layer(1), layer(2)]);
    expect(badam.partition.frozenNames).toEqual([
      'model.embed_tokens.weight',
      'model.norm.weight',
      'lm_head.weight',
    ]);

    const withHead = plan('block', {
      partition: { includeEmbedding: true, includeLmHead: true, activeModules: ['model.layers.2.mlp.'] },
    });
    const mlp2 = ['model.layers.2.mlp.up_proj.weight'];
    expect(withHead.partition.groups).toEqual([
      ['model.embed_tokens.weight', ...mlp2],
      [...layer(0), ...mlp2],
      [...layer(1), ...mlp2],
      [...layer(2).filter((n) => !mlp2.includes(n)), ...mlp2],
      ['model.norm.weight', 'lm_head.weight', ...mlp2],
    ]);
    expect(withHead.partition.frozenNames).toEqual([]);
    // The plan says what the BlockOptimizer it describes trains, on any backend.
    for (const p of [badam, withHead]) expect(optimizerGroups(p, parameters)).toEqual(p.partition.groups);
  });

  it("full Adam: one group of every parameter, never switching; LoRA: the adapters and the model's active modules", () => {
    const full = plan('full', { partition: { activeModules: ['lm_head.'] } });
    expect(full.optimizer).toMatchObject({
      kind: 'block',
      options: { partition: 'model', switchBlockEvery: -1 },
    });
    expect(full.partition.groups).toEqual([names]);
    expect(optimizerGroups(full, parameters)).toEqual([names]);

    const adapters = [
      'model.layers.0.self_attn.q_proj.lora_A.default.weight',
      'model.layers.0.self_attn.q_proj.lora_B.default.weight',
    ];
    const withLora: NamedParameterInfo[] = [
      ...parameters,
      { name: adapters[0]!, shape: [2, 4], dtype: 'float32' },
      { name: adapters[1]!, shape: [4, 2], dtype: 'float32' },
    ];
    const lora = planTraining({
      settings: { method: 'lora', learningRate: 1e-3 },
      parameters: withLora,
      partition: { activeModules: ['lm_head.'] },
      logFn: quiet,
    });
    expect(lora.partition.groups).toEqual([[...adapters, 'lm_head.weight']]);
    expect(lora.partition.frozenNames).toEqual(names.filter((n) => n !== 'lm_head.weight'));
    expect(optimizerGroups(lora, withLora)).toEqual(lora.partition.groups);
  });

  it('the ratio: one group of every parameter but the embedding and lm_head, unless included', () => {
    const ratio = plan('sparse', { settings: { method: 'sparse', learningRate: 1e-3, updateRatio: 0.25 } });
    const trained = names.filter((n) => n !== 'model.embed_tokens.weight' && n !== 'lm_head.weight');
    expect(ratio.partition.groups).toEqual([trained]);
    expect(ratio.optimizer).toEqual({
      kind: 'ratio',
      masks: {
        switchBlockEvery: 100,
        seed: 42,
        includeEmbedding: false,
        includeLmHead: false,
        updateRatio: 0.25,
      },
      verbose: 1,
    });
    expect(names.filter((n) => isTrainedByRatio(n))).toEqual(trained);
    const all = plan('sparse', { partition: { includeEmbedding: true, includeLmHead: true } });
    expect(all.partition.groups).toEqual([names]);
    expect(isTrainedByRatio('roberta.embeddings.LayerNorm.weight')).toBe(false);
  });

  it('every method: AdamW with the settings, accumulation, clipping and seed, and the plain parameter list', () => {
    for (const method of FINE_TUNING_METHODS) {
      const p = planTraining({
        settings: {
          method,
          learningRate: 2e-3,
          weightDecay: 0.01,
          gradientAccumulationSteps: 4,
          clipGradNorm: 1,
          seed: 7,
        },
        parameters:
          method === 'lora'
            ? [...parameters, { name: 'model.layers.0.lora_A.weight', shape: [2, 4], dtype: 'float32' }]
            : parameters,
        defaultSwitchBlockEvery: 50,
        logFn: quiet,
      });
      expect(p).toMatchObject({
        method,
        baseOptimizer: {
          type: 'adamw',
          learningRate: 2e-3,
          weightDecay: 0.01,
          betas: [0.9, 0.999],
          epsilon: 1e-8,
        },
        gradientAccumulationSteps: 4,
        clipGradNorm: 1,
        seed: 7,
      });
      expect(Object.keys(p.parameters[0]!).sort()).toEqual(['dtype', 'name', 'shape']); // no tensors
      if (p.optimizer.kind === 'block') {
        expect(p.optimizer.options).toMatchObject({ gradientAccumulationSteps: 4, clipGradNorm: 1, seed: 7 });
      }
    }
  });

  it("carries the settings' betas and epsilon into the base optimizer of every method (the ratio's too)", () => {
    for (const method of FINE_TUNING_METHODS) {
      const p = plan(method, {
        settings: { method, learningRate: 1e-3, betas: [0.8, 0.95], epsilon: 1e-6 },
        parameters:
          method === 'lora'
            ? [...parameters, { name: 'model.layers.0.lora_A.weight', shape: [2, 4], dtype: 'float32' }]
            : parameters,
      });
      expect(p.baseOptimizer).toMatchObject({ betas: [0.8, 0.95], epsilon: 1e-6 });
      if (p.optimizer.kind === 'block')
        expect(p.optimizer.options.baseOptimizer).toMatchObject({ betas: [0.8, 0.95], epsilon: 1e-6 });
    }
    expect(() =>
      plan('block', { settings: { method: 'block', learningRate: 1e-3, betas: [0.9, 1] } }),
    ).toThrow(BadamOptionError);
  });
});

describe("planTraining: BAdam's K", () => {
  it('suggested when neither the settings nor the caller give one, with a line saying which and why', () => {
    const lines: string[] = [];
    const p = planTraining({
      settings: { method: 'block', learningRate: 1e-3, batchSize: 4, gradientAccumulationSteps: 2 },
      parameters,
      partition: { includeLmHead: true },
      defaultSwitchBlockEvery: 'suggest',
      trainExamples: 2000,
      switchBlockEveryName: '--switch_block_every',
      logFn: (m) => lines.push(m),
    });
    // min(max(round(2000 / (8 * 4)), 50), 100) = 63 for D = 4 blocks (3 layers and the head).
    expect(p.optimizer.kind === 'block' && p.optimizer.options.switchBlockEvery).toBe(63);
    expect(lines).toEqual([
      'BAdam: --switch_block_every not set: using 63 = min(max(round(n / (B * D)), 50), 100) for n = 2000, B = 8, D = 4',
    ]);
  });

  it("as given, or the caller's number, without a line; a suggestion needs the number of examples", () => {
    const lines: string[] = [];
    const k = (extra: Partial<Parameters<typeof planTraining>[0]>) => {
      const p = planTraining({
        settings: { method: 'block', learningRate: 1e-3 },
        parameters,
        logFn: (m) => lines.push(m),
        ...extra,
      });
      return p.optimizer.kind === 'block' ? p.optimizer.options.switchBlockEvery : undefined;
    };
    expect(k({})).toBe(50);
    expect(k({ defaultSwitchBlockEvery: 100 })).toBe(100);
    expect(
      k({
        settings: { method: 'block', learningRate: 1e-3, switchBlockEvery: 7 },
        defaultSwitchBlockEvery: 'suggest',
      }),
    ).toBe(7);
    expect(lines).toEqual([]);
    expect(() => k({ defaultSwitchBlockEvery: 'suggest' })).toThrow(BadamOptionError);
    expect(() => k({ defaultSwitchBlockEvery: 'suggest' })).toThrow(
      /trainExamples must be the number of training examples/,
    );
  });

  it('refuses a method it does not know, naming the ones it does', () => {
    expect(() => plan('dense' as FineTuningMethod)).toThrow(
      /settings.method must be one of "block", "full", "lora", "sparse", got "dense"/,
    );
  });
});

describe('estimatePlanMemory', () => {
  it("counts each method's trained parameters: BAdam's largest group, the ratio's masks, LoRA's adapted weights", () => {
    const badam = plan('block', { partition: { includeLmHead: true } });
    const estimate = estimatePlanMemory(badam, { activationBytes: 100 });
    expect(estimate).toEqual(
      estimateMemory({ method: 'badam', parameters, blocks: badam.partition.groups, activationBytes: 100 }),
    );
    expect(estimate.trainedElements).toBe(trainedElements(badam));
    expect(trainedElements(badam)).toBe(16 * 4 + 4); // the head block: lm_head and the final norm

    const ratio = plan('sparse', {
      settings: { method: 'sparse', learningRate: 1e-3, updateRatio: 0.5, maskMode: 'scatter' },
    });
    expect(estimatePlanMemory(ratio)).toEqual(
      estimateMemory({
        method: 'ratio',
        parameters,
        blocks: ratio.partition.groups,
        updateRatio: 0.5,
        maskMode: 'scatter',
      }),
    );

    // peft's names: q_proj and v_proj wrapped (base_layer), rank 8, on TinyLlama's 22 layers.
    const peft = fixtureParameters('tinyllama-1.1b-peft-lora', 'bfloat16');
    const lora = planTraining({
      settings: { method: 'lora', learningRate: 1e-4 },
      parameters: peft,
      logFn: quiet,
    });
    const adapters = peft.filter((p) => isLoraParameter(p.name));
    const adapterElements = adapters.reduce((n, p) => n + p.shape[0]! * p.shape[1]!, 0);
    expect(trainedElements(lora)).toBe(adapterElements);
    const memory = estimatePlanMemory(lora, { loraRank: 8 });
    expect(memory.trainedElements).toBe(adapterElements);
    expect(memory.optimizerState).toBe(8 * adapterElements);
  });

  it('loraAdaptedModuleOf: the module an adapter adapts, for every peft spelling', () => {
    expect(
      loraAdaptedModuleOf('base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight'),
    ).toBe('base_model.model.model.layers.0.self_attn.q_proj.');
    expect(loraAdaptedModuleOf('model.layers.0.mlp.up_proj.lora_B.weight')).toBe(
      'model.layers.0.mlp.up_proj.',
    );
    expect(loraAdaptedModuleOf('model.layers.0.mlp.up_proj.weight')).toBeUndefined();
  });
});

describe('checkPlannedParameters', () => {
  it("accepts the plan's own parameters, and names the first that differs otherwise", () => {
    const p = plan('full');
    expect(() => checkPlannedParameters(p, parameters)).not.toThrow();
    expect(() =>
      checkPlannedParameters(p, [
        ...parameters,
        { name: 'x.lora_A.weight', shape: [2, 4], dtype: 'float32' },
      ]),
    ).toThrow(/parameter 15 of the model must be nothing, as in the plan, got "x.lora_A.weight \[2, 4\]"/);
    const resized = parameters.map((q, i) => (i === 1 ? { ...q, shape: [8, 4] } : q));
    expect(() => checkPlannedParameters(p, resized)).toThrow(
      /parameter 1 of the model must be model.layers.0.self_attn.q_proj.weight \[4, 4\], as in the plan, got "model.layers.0.self_attn.q_proj.weight \[8, 4\]"/,
    );
  });
});
