import { describe, expect, it } from 'vitest';
import {
  type AdamWConfig,
  adamwUpdate,
  BadamOptionError,
  BadamStateError,
  BlockOptimizer,
  type BlockOptimizerOptions,
  type LogLevel,
  numel,
  ReferenceBackend,
  resolveAdamWConfig,
  roundToBfloat16,
} from '../src/index.js';
import { syntheticGradient, tinyLlamaParameters } from './fixtures/tiny-llama.js';

type Options = Omit<
  BlockOptimizerOptions<AdamWConfig>,
  'namedParameters' | 'baseOptimizer' | 'learningRate'
> & {
  baseOptimizer?: AdamWConfig;
  learningRate?: number;
};

function setup(options: Options = {}, model: Parameters<typeof tinyLlamaParameters>[0] = {}) {
  const parameters = tinyLlamaParameters(model);
  const backend = new ReferenceBackend(parameters);
  const logs: Array<[string, LogLevel]> = [];
  const optimizer = new BlockOptimizer<AdamWConfig, ReferenceBackend>(
    {
      baseOptimizer: options.baseOptimizer ?? {},
      namedParameters: parameters,
      learningRate: options.learningRate ?? 1e-2,
      logFn: (message, level) => logs.push([message, level]),
      ...options,
    },
    backend,
  );
  return { parameters, backend, optimizer, logs };
}

/** One micro-batch: supply gradients of the trainable parameters only, as backward would. */
function backward(optimizer: BlockOptimizer<AdamWConfig, ReferenceBackend>, microStep: number): void {
  for (const p of optimizer.trainableParameters) {
    optimizer.backend.accumulateGradient(p.name, syntheticGradient(p.name, numel(p.shape), microStep));
  }
}

describe('BlockOptimizer engine with the reference backend', () => {
  it('equals plain AdamW on the active block with its state reset at every switch (ascending, K = 3)', () => {
    const k = 3;
    const { parameters, optimizer, backend } = setup({
      switchBlockEvery: k,
      baseOptimizer: { weightDecay: 0.1 },
    });
    // The expected trajectory, written out independently: blocks 0,1,2,3,0,... each for K steps with
    // fresh moments; only layer parameters change.
    const weights = new Map(parameters.map((p) => [p.name, Float32Array.from(p.values)]));
    const config = resolveAdamWConfig({ weightDecay: 0.1 });
    let moments = new Map<string, { m: Float32Array; v: Float32Array }>();
    for (let step = 0; step < 5 * 4 * k; step++) {
      const block = Math.floor(step / k) % 4;
      const t = (step % k) + 1;
      if (t === 1) moments = new Map();
      expect(optimizer.activeBlock.index).toBe(block);
      expect(optimizer.stepsInBlock).toBe(t - 1);
      backward(optimizer, step);
      optimizer.step();
      for (const p of parameters.filter((q) => q.name.includes(`layers.${block}.`))) {
        const w = weights.get(p.name)!;
        const state = moments.get(p.name) ?? { m: new Float32Array(w.length), v: new Float32Array(w.length) };
        moments.set(p.name, state);
        const decay = !p.name.endsWith('bias') && !p.name.includes('layernorm');
        adamwUpdate(w, syntheticGradient(p.name, w.length, step), state.m, state.v, config, {
          lr: 1e-2,
          step: t,
          gradientScale: 1,
          decay,
        });
      }
    }
    for (const p of parameters) expect(backend.weight(p.name)).toEqual(weights.get(p.name));
    // Frozen parameters never moved.
    expect(backend.weight('lm_head.weight')).toEqual(Float32Array.from(parameters.at(-1)!.values));
  });

  it('every block gets exactly K steps, the first one too (the reference gives it K - 1)', () => {
    const { optimizer } = setup({ switchBlockEvery: 5 });
    const updated: number[] = [];
    for (let i = 0; i < 20; i++) {
      backward(optimizer, i);
      updated.push(optimizer.step().updatedBlock);
    }
    expect(updated).toEqual([0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3]);
  });

  it('backward stops at the active block: gradients for other parameters are refused', () => {
    const { optimizer, backend } = setup({ switchBlockEvery: 2 });
    expect(optimizer.trainableNames).toEqual([
      'model.layers.0.self_attn.q_proj.weight',
      'model.layers.0.self_attn.q_proj.bias',
      'model.layers.0.mlp.up_proj.weight',
      'model.layers.0.input_layernorm.weight',
    ]);
    expect(optimizer.isTrainable('model.layers.1.mlp.up_proj.weight')).toBe(false);
    expect(() =>
      backend.accumulateGradient('model.layers.1.mlp.up_proj.weight', new Float32Array(32)),
    ).toThrow(BadamStateError);
  });

  it('gradient accumulation: G micro-batches make one update with their mean; K counts updates', () => {
    const g = 3;
    const accumulated = setup({ switchBlockEvery: 2, gradientAccumulationSteps: g });
    const name = 'model.layers.0.mlp.up_proj.weight';
    const before = accumulated.backend.weight(name);
    const outcomes = [];
    for (let micro = 0; micro < g; micro++) {
      backward(accumulated.optimizer, micro);
      outcomes.push(accumulated.optimizer.step());
    }
    expect(outcomes.map((o) => o.applied)).toEqual([false, false, true]);
    expect(accumulated.optimizer.globalStepCount).toBe(1);
    // The same update by hand on the mean gradient.
    const mean = new Float32Array(before.length);
    for (let micro = 0; micro < g; micro++) {
      syntheticGradient(name, before.length, micro).forEach((x, i) => {
        mean[i] = mean[i]! + x;
      });
    }
    const expected = Float32Array.from(before);
    adamwUpdate(
      expected,
      mean,
      new Float32Array(before.length),
      new Float32Array(before.length),
      resolveAdamWConfig(),
      {
        lr: 1e-2,
        step: 1,
        gradientScale: 1 / g,
        decay: true,
      },
    );
    expect(accumulated.backend.weight(name)).toEqual(expected);
    // K = 2 optimizer steps = 6 micro-batches per block.
    for (let micro = g; micro < 2 * g; micro++) {
      backward(accumulated.optimizer, micro);
      accumulated.optimizer.step();
    }
    expect(accumulated.optimizer.activeBlock.index).toBe(1);
  });

  it('deactivation returns the memory: masters, gradients and moments exist for the active block only', () => {
    const { optimizer, backend, parameters } = setup(
      { switchBlockEvery: 1 },
      { dtype: 'bfloat16', hidden: 8 },
    );
    const blockElements = (b: number) =>
      parameters.filter((p) => p.name.includes(`layers.${b}.`)).reduce((n, p) => n + numel(p.shape), 0);
    const weights = parameters.reduce((n, p) => n + numel(p.shape) * 2, 0);
    for (let step = 0; step < 8; step++) {
      const block = optimizer.activeBlock.index;
      const memory = backend.memory();
      expect(memory.byKind).toEqual({
        weights,
        masters: 4 * blockElements(block),
        gradients: 4 * blockElements(block),
        optimizerState: 8 * blockElements(block),
      });
      backward(optimizer, step);
      optimizer.step();
    }
    optimizer.dispose();
    expect(backend.memory().bytes).toBe(weights);
    expect(() => optimizer.step()).toThrow(/disposed/);
  });

  it('bf16 weights are rounded after every update while the fp32 master keeps the precision', () => {
    const { optimizer, backend } = setup(
      { switchBlockEvery: -1, learningRate: 1e-4 },
      { dtype: 'bfloat16', hidden: 8 },
    );
    const name = 'model.layers.0.mlp.up_proj.weight';
    const initial = backend.weight(name);
    // A constant gradient: every Adam step moves each entry by about lr = 1e-4, far below half a bf16 ulp
    // for |w| >= 0.05, so rounding each step without an fp32 master would never move those weights.
    for (let step = 0; step < 40; step++) {
      for (const p of optimizer.trainableParameters)
        backend.accumulateGradient(p.name, new Float32Array(numel(p.shape)).fill(1));
      optimizer.step();
    }
    const after = backend.weight(name);
    for (const x of after) expect(roundToBfloat16(x)).toBe(x);
    const large = [...initial.keys()].filter((i) => Math.abs(initial[i]!) >= 0.05);
    expect(roundToBfloat16(initial[large[0]!]! - 1e-4)).toBe(initial[large[0]!]);
    const moved = large.filter((i) => after[i]! < initial[i]!);
    expect(moved.length).toBeGreaterThan(large.length / 2);
    for (const i of large)
      expect(Math.abs(after[i]! - (initial[i]! - 40e-4))).toBeLessThan(Math.abs(initial[i]!) * 2 ** -8);
  });

  it('weight decay skips biases and norm weights', () => {
    const { optimizer, backend } = setup({
      switchBlockEvery: -1,
      baseOptimizer: { weightDecay: 0.5 },
      learningRate: 0.1,
    });
    const before = new Map(optimizer.trainableNames.map((n) => [n, backend.weight(n)]));
    // Zero gradients: Adam's step is 0, only the decay acts.
    for (const p of optimizer.trainableParameters)
      backend.accumulateGradient(p.name, new Float32Array(numel(p.shape)));
    optimizer.step();
    for (const p of optimizer.trainableParameters) {
      const expected = p.weightDecay
        ? before.get(p.name)!.map((x) => Math.fround(x * (1 - 0.1 * 0.5)))
        : before.get(p.name)!;
      expect(backend.weight(p.name)).toEqual(expected);
    }
    expect(optimizer.trainableParameters.filter((p) => !p.weightDecay).map((p) => p.name)).toEqual([
      'model.layers.0.self_attn.q_proj.bias',
      'model.layers.0.input_layernorm.weight',
    ]);
  });

  it('the learning rate set on the optimizer is the one the update uses', () => {
    const a = setup({ switchBlockEvery: -1 });
    const b = setup({ switchBlockEvery: -1, learningRate: 0.5 });
    a.optimizer.lr = 0.5;
    backward(a.optimizer, 0);
    backward(b.optimizer, 0);
    a.optimizer.step();
    b.optimizer.step();
    const name = 'model.layers.0.mlp.up_proj.weight';
    expect(a.backend.weight(name)).toEqual(b.backend.weight(name));
    expect(() => {
      a.optimizer.lr = Number.NaN;
    }).toThrow('lr must be a finite number >= 0, got NaN');
  });

  it('activeModules train in every block (their state restarting with each block); includeLmHead adds a last block', () => {
    const { optimizer } = setup({ switchBlockEvery: 1, includeLmHead: true, activeModules: ['lm_head.'] });
    const seen: string[][] = [];
    for (let step = 0; step < 5; step++) {
      seen.push(optimizer.trainableNames);
      backward(optimizer, step);
      optimizer.step();
    }
    for (const names of seen.slice(0, 4)) expect(names.at(-1)).toBe('lm_head.weight');
    // Block 4 = [model.norm.weight, lm_head.weight] minus the active module.
    expect(seen[4]).toEqual(['model.norm.weight', 'lm_head.weight']);
    expect(optimizer.trainableParameters.find((p) => p.name === 'lm_head.weight')?.activeModule).toBe(true);
  });

  it('LoRA mode trains only lora parameters and skips blocks without any', () => {
    const parameters = tinyLlamaParameters({ layers: 3 });
    const withLora = [
      ...parameters.slice(0, 5),
      {
        name: 'model.layers.0.self_attn.q_proj.lora_A.default.weight',
        shape: [2, 4],
        dtype: 'float32' as const,
        values: new Array(8).fill(0.1),
      },
      ...parameters.slice(5, 9),
      ...parameters.slice(9),
      {
        name: 'model.layers.2.self_attn.q_proj.lora_A.default.weight',
        shape: [2, 4],
        dtype: 'float32' as const,
        values: new Array(8).fill(0.1),
      },
    ];
    const backend = new ReferenceBackend(withLora);
    const logs: string[] = [];
    const optimizer = new BlockOptimizer(
      {
        baseOptimizer: {},
        namedParameters: withLora,
        learningRate: 1e-3,
        switchBlockEvery: 1,
        logFn: (m) => logs.push(m),
      },
      backend,
    );
    const visited: string[][] = [];
    for (let step = 0; step < 4; step++) {
      visited.push(optimizer.trainableNames);
      backward(optimizer, step);
      optimizer.step();
    }
    expect(visited).toEqual([
      ['model.layers.0.self_attn.q_proj.lora_A.default.weight'],
      ['model.layers.2.self_attn.q_proj.lora_A.default.weight'],
      ['model.layers.0.self_attn.q_proj.lora_A.default.weight'],
      ['model.layers.2.self_attn.q_proj.lora_A.default.weight'],
    ]);
    expect(logs.join('\n')).toMatch(
      /LoRA mode: only lora parameters train; 1 block\(s\) without any are skipped/,
    );
    expect(
      () =>
        new BlockOptimizer(
          {
            baseOptimizer: {},
            namedParameters: withLora,
            learningRate: 1e-3,
            startBlock: 1,
            logFn: () => {},
          },
          new ReferenceBackend(withLora),
        ),
    ).toThrow(/startBlock must be a block with trainable parameters: one of 0, 2, got 1/);
  });

  it('random order with startBlock: block epochs are permutations, starting at startBlock', () => {
    const { optimizer } = setup({ switchBlockEvery: 1, switchMode: 'random', startBlock: 2, seed: 5 });
    const order: number[] = [];
    for (let step = 0; step < 12; step++) {
      order.push(optimizer.activeBlock.index);
      backward(optimizer, step);
      optimizer.step();
    }
    expect(order[0]).toBe(2);
    for (let e = 0; e < 3; e++) expect([...order.slice(4 * e, 4 * e + 4)].sort()).toEqual([0, 1, 2, 3]);
  });

  it('resume: state() + loadState() continue the identical order; at a block boundary the weights match bit for bit', () => {
    const options: Options = { switchBlockEvery: 3, switchMode: 'random', seed: 9, learningRate: 5e-3 };
    const steps = 30;
    const straight = setup(options);
    const straightBlocks: number[] = [];
    for (let step = 0; step < steps; step++) {
      straightBlocks.push(straight.optimizer.activeBlock.index);
      backward(straight.optimizer, step);
      straight.optimizer.step();
    }
    // First half: 12 steps (a multiple of K, so the saved point is a block boundary).
    const first = setup(options);
    const blocks: number[] = [];
    for (let step = 0; step < 12; step++) {
      blocks.push(first.optimizer.activeBlock.index);
      backward(first.optimizer, step);
      first.optimizer.step();
    }
    const saved = JSON.parse(JSON.stringify(first.optimizer.state()));
    // A new process: weights from the "checkpoint", a fresh optimizer, loadState.
    const parameters = first.parameters.map((p) => ({ ...p, values: first.backend.weight(p.name) }));
    const backend = new ReferenceBackend(parameters);
    const resumed = new BlockOptimizer<AdamWConfig, ReferenceBackend>(
      { baseOptimizer: {}, namedParameters: parameters, learningRate: 1, logFn: () => {}, ...options },
      backend,
    );
    resumed.loadState(saved);
    expect(resumed.lr).toBe(5e-3);
    expect(resumed.globalStepCount).toBe(12);
    for (let step = 12; step < steps; step++) {
      blocks.push(resumed.activeBlock.index);
      backward(resumed, step);
      resumed.step();
    }
    expect(blocks).toEqual(straightBlocks);
    for (const p of parameters) expect(backend.weight(p.name)).toEqual(straight.backend.weight(p.name));
  });

  it('loadState refuses state from a different partition or schedule', () => {
    const { optimizer } = setup({ switchBlockEvery: 3 });
    const state = optimizer.state();
    expect(() => setup({ switchBlockEvery: 3, includeLmHead: true }).optimizer.loadState(state)).toThrow(
      /different block partition/,
    );
    expect(() => setup({ switchBlockEvery: 4 }).optimizer.loadState(state)).toThrow(
      /saved with switchBlockEvery = 3, this optimizer has 4/,
    );
    expect(() =>
      setup({ switchBlockEvery: 3 }).optimizer.loadState({ ...state, version: 7 } as never),
    ).toThrow(/version 1/);
  });

  it('verbose levels: 0 silent but warnings, 1 partition, frozen parameters and switches, 2 trainable lists', () => {
    const quiet = setup({
      verbose: 0,
      switchBlockEvery: 1,
      blockPrefixList: [['model.layers.1'], ['model.layers.2.']],
    });
    backward(quiet.optimizer, 0);
    quiet.optimizer.step();
    expect(quiet.logs).toEqual([[expect.stringMatching(/no trailing dot/), 'warn']]);

    const normal = setup({ verbose: 1, switchBlockEvery: 1 });
    backward(normal.optimizer, 0);
    normal.optimizer.step();
    const text = normal.logs.map(([m]) => m).join('\n');
    expect(text).toMatch(/BAdam: 4 blocks, switch every 1 steps, mode ascending/);
    expect(text).toMatch(
      /3 frozen parameter\(s\) in no block: model.embed_tokens.weight, model.norm.weight, lm_head.weight/,
    );
    expect(text).toMatch(/step 1: block 0 done after 1 steps, switching to block 1 \(model.layers.1.\)/);
    expect(text).not.toMatch(/trainable parameters:/);

    const chatty = setup({ verbose: 2 });
    expect(chatty.logs.map(([m]) => m).join('\n')).toMatch(
      /block 0 trainable parameters:\n {2}model.layers.0.self_attn.q_proj.weight \[4, 4\] float32/,
    );
  });

  it('rejects bad options, naming the option, the value and what is allowed', () => {
    expect(() => setup({ switchBlockEvery: 0 })).toThrow(
      'switchBlockEvery must be an integer >= 1, or -1 to never switch, got 0',
    );
    expect(() => setup({ switchMode: 'cyclic' as 'random' })).toThrow(/switchMode must be one of/);
    expect(() => setup({ startBlock: 4 })).toThrow('startBlock must be an integer >= 0 and <= 3, got 4');
    expect(() => setup({ verbose: 3 as 2 })).toThrow('verbose must be one of 0, 1, 2, got 3');
    expect(() => setup({ gradientAccumulationSteps: 0 })).toThrow(
      /gradientAccumulationSteps must be an integer >= 1/,
    );
    expect(() => setup({ learningRate: -1 })).toThrow('learningRate must be a finite number >= 0, got -1');
    expect(() => setup({ switch_block_every: 3 } as Options)).toThrow(BadamOptionError);
    expect(() => setup({ switch_block_every: 3 } as Options)).toThrow(
      /switch_block_every must be absent: it is not an option/,
    );
    expect(() => setup({ switchBlockEvery: 3, switchEvery: 3 })).toThrow(
      'switchEvery must be absent when switchBlockEvery is given, got 3 (switchEvery is the old name of switchBlockEvery)',
    );
    expect(() => setup({ learningRate: 0.1, lr: 0.1 })).toThrow(
      /lr must be absent when learningRate is given/,
    );
    expect(() => setup({ baseOptimizer: { beta1: 1.5 } })).toThrow(
      /beta1 must be a finite number >= 0 and < 1/,
    );
  });
});
