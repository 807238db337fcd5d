import type { LogLevel } from '@badam/core';
import * as tf from '@tensorflow/tfjs';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  AdamW,
  BlockOptimizer,
  globalNorm,
  namedVariablesFromLayersModel,
  useTfjsBackend,
} from '../src/index.js';
import { onBackend, TEST_BACKENDS } from './fixtures/backends.js';
import { createTinyLlama, randomTokens, snapshot } from './fixtures/tiny-llama.js';

const CONFIG = { vocab: 16, hidden: 8, intermediate: 12, layers: 3, heads: 2 };

function changed(before: Map<string, Float32Array>, after: Map<string, Float32Array>): string[] {
  return [...after].filter(([name, v]) => v.some((x, i) => x !== before.get(name)![i])).map(([name]) => name);
}

describe('BlockOptimizer on tfjs', () => {
  beforeAll(async () => {
    await onBackend('cpu');
  });
  afterEach(() => tf.disposeVariables());

  const BASES: Array<[string, () => tf.Optimizer]> = [
    ['sgd', () => tf.train.sgd(0.05)],
    ['momentum', () => tf.train.momentum(0.05, 0.9)],
    ['rmsprop', () => tf.train.rmsprop(0.01)],
    ['adagrad', () => tf.train.adagrad(0.05)],
    ['adadelta', () => tf.train.adadelta(1)],
    ['adam', () => tf.train.adam(0.01)],
    ['adamax', () => tf.train.adamax(0.01)],
    ['AdamW', () => new AdamW({ learningRate: 0.01, weightDecay: 0.1 })],
  ];
  for (const [label, make] of BASES) {
    it(`${label} as base optimizer: one block trains at a time, a fresh optimizer per block, its state freed`, () => {
      const model = createTinyLlama(CONFIG, 1);
      const optimizer = new BlockOptimizer({
        baseOptimizer: make(),
        namedParameters: model.named,
        switchBlockEvery: 2,
        verbose: 0,
      });
      const optimizers = new Set<tf.Optimizer>();
      const baseline = tf.memory().numTensors;
      const counts: number[] = [];
      for (let step = 0; step < 12; step++) {
        const before = snapshot(model.named);
        const block = optimizer.activeBlock.index;
        optimizers.add(optimizer.backend.activeOptimizer!);
        const tokens = randomTokens(2, 5, CONFIG.vocab, step);
        optimizer.minimize(() => model.loss(tokens));
        tokens.dispose();
        const moved = changed(before, snapshot(model.named));
        expect(moved.length).toBeGreaterThan(0);
        for (const name of moved) expect(name.startsWith(`model.layers.${block}.`)).toBe(true);
        counts.push(tf.memory().numTensors);
      }
      // 6 turns, 6 distinct optimizer instances. After a block's last step its state is freed and the
      // count is back at the baseline; mid-block it is the same every time: nothing accumulates.
      expect(optimizers.size).toBe(6);
      counts.forEach((c, i) => expect(c).toBe(counts[i % 2]));
      expect(counts[1]).toBe(baseline);
      optimizer.dispose();
      model.dispose();
      // Everything the optimizer made is gone; only the model's variables and the base template remain.
      expect(tf.memory().numTensors).toBeLessThanOrEqual(counts[0]! - model.named.length);
    });
  }

  it('Adam state restarts when a block comes back: its first step equals a fresh Adam step', () => {
    const model = createTinyLlama({ ...CONFIG, layers: 2 }, 2);
    const optimizer = new BlockOptimizer({
      baseOptimizer: tf.train.adam(0.01),
      namedParameters: model.named,
      switchBlockEvery: 1,
      verbose: 0,
    });
    for (let step = 0; step < 2; step++) {
      const tokens = randomTokens(2, 5, CONFIG.vocab, step);
      optimizer.minimize(() => model.loss(tokens));
      tokens.dispose();
    }
    expect(optimizer.activeBlock.index).toBe(0);
    // Expected: a brand-new Adam on a copy of the current weights.
    const copy = createTinyLlama({ ...CONFIG, layers: 2 }, 2);
    for (const [name, v] of copy.named) v.assign(tf.tensor(snapshot(model.named).get(name)!, v.shape));
    const tokens = randomTokens(2, 5, CONFIG.vocab, 99);
    const fresh = tf.train.adam(0.01);
    const vars = copy.named.filter(([n]) => n.startsWith('model.layers.0.')).map(([, v]) => v);
    const { grads } = tf.variableGrads(() => copy.loss(tokens), vars);
    fresh.applyGradients(grads as never);
    optimizer.minimize(() => model.loss(tokens));
    const got = snapshot(model.named);
    for (const [name, want] of snapshot(copy.named)) {
      const actual = got.get(name)!;
      want.forEach((x, i) => expect(Math.abs(actual[i]! - x)).toBeLessThan(1e-6));
    }
  });

  it('the learning rate set on the optimizer is what the base optimizer uses (sgd: w -= lr * g)', () => {
    const model = createTinyLlama(CONFIG, 3);
    const optimizer = new BlockOptimizer({
      baseOptimizer: tf.train.sgd(1),
      namedParameters: model.named,
      switchBlockEvery: -1,
      verbose: 0,
    });
    optimizer.lr = 0.25;
    const tokens = randomTokens(2, 5, CONFIG.vocab, 1);
    const before = snapshot(model.named);
    const { grads } = optimizer.computeGradients(() => model.loss(tokens));
    const expected = new Map(
      Object.entries(grads).map(([key, g]) => {
        const name = key.slice(key.indexOf('/') + 1);
        return [name, before.get(name)!.map((w, i) => Math.fround(w - 0.25 * g.dataSync()[i]!))];
      }),
    );
    tf.dispose(grads);
    optimizer.minimize(() => model.loss(tokens));
    const after = snapshot(model.named);
    for (const [name, want] of expected)
      want.forEach((x, i) => expect(after.get(name)![i]).toBeCloseTo(x, 6));
  });

  it('computes gradients for the active block only (backward stops there)', () => {
    const model = createTinyLlama(CONFIG, 4);
    const optimizer = new BlockOptimizer({
      baseOptimizer: tf.train.adam(0.01),
      namedParameters: model.named,
      startBlock: 1,
      activeModules: ['model.norm.'],
      verbose: 0,
    });
    const tokens = randomTokens(2, 5, CONFIG.vocab, 1);
    const { value, grads } = optimizer.computeGradients(() => model.loss(tokens));
    expect(Object.keys(grads).map((k) => k.slice(k.indexOf('/') + 1))).toEqual([
      ...model.named.map(([n]) => n).filter((n) => n.startsWith('model.layers.1.')),
      'model.norm.weight',
    ]);
    expect(model.named.find(([n]) => n === 'model.layers.0.mlp.up_proj.weight')![1].trainable).toBe(false);
    tf.dispose([value, grads]);
  });

  it('applyGradients with gradients for every variable: frozen ones ignored (one warning), same result as minimize', () => {
    const a = createTinyLlama(CONFIG, 5);
    const b = createTinyLlama(CONFIG, 5);
    const logs: Array<[string, LogLevel]> = [];
    const make = (named: typeof a.named) =>
      new BlockOptimizer({
        baseOptimizer: tf.train.adam(0.01),
        namedParameters: named,
        switchBlockEvery: 1,
        logFn: (m, l) => logs.push([m, l]),
        verbose: 1,
      });
    const viaMinimize = make(a.named);
    const viaApply = make(b.named);
    for (let step = 0; step < 4; step++) {
      const tokens = randomTokens(2, 5, CONFIG.vocab, step);
      viaMinimize.minimize(() => a.loss(tokens));
      for (const [, v] of b.named) v.trainable = true;
      const { value, grads } = tf.variableGrads(
        () => b.loss(tokens),
        b.named.map(([, v]) => v),
      );
      viaApply.applyGradients(grads);
      tf.dispose([value, grads, tokens]);
    }
    const sa = snapshot(a.named);
    for (const [name, want] of snapshot(b.named))
      want.forEach((x, i) => expect(sa.get(name)![i]).toBeCloseTo(x, 6));
    expect(logs.filter(([m]) => m.includes('ignored gradients'))).toHaveLength(1);
    expect(() => viaApply.applyGradients({ nothing: tf.scalar(1) })).toThrow(
      /no gradient for any trainable parameter/,
    );
  });

  it('gradient accumulation: two micro-batches make one update with their mean gradient', () => {
    const model = createTinyLlama(CONFIG, 6);
    const reference = createTinyLlama(CONFIG, 6);
    const optimizer = new BlockOptimizer({
      baseOptimizer: tf.train.sgd(0.5),
      namedParameters: model.named,
      gradientAccumulationSteps: 2,
      switchBlockEvery: 1,
      verbose: 0,
    });
    const t1 = randomTokens(2, 5, CONFIG.vocab, 1);
    const t2 = randomTokens(2, 5, CONFIG.vocab, 2);
    optimizer.minimize(() => model.loss(t1));
    expect(optimizer.lastStep?.applied).toBe(false);
    optimizer.minimize(() => model.loss(t2));
    expect(optimizer.lastStep).toMatchObject({
      applied: true,
      switched: true,
      updatedBlock: 0,
      activeBlock: 1,
    });
    const vars = reference.named.filter(([n]) => n.startsWith('model.layers.0.')).map(([, v]) => v);
    tf.train
      .sgd(0.5)
      .minimize(() => tf.div(tf.add(reference.loss(t1), reference.loss(t2)), 2) as tf.Scalar, false, vars);
    const got = snapshot(model.named);
    for (const [name, want] of snapshot(reference.named))
      want.forEach((x, i) => expect(got.get(name)![i]).toBeCloseTo(x, 6));
  });

  it("clips the active block's gradients to a global norm", () => {
    const model = createTinyLlama(CONFIG, 7);
    const optimizer = new BlockOptimizer({
      baseOptimizer: tf.train.sgd(1),
      namedParameters: model.named,
      clipGradNorm: 1e-3,
      verbose: 0,
    });
    const tokens = randomTokens(2, 5, CONFIG.vocab, 3);
    const { value, grads } = optimizer.computeGradients(() => model.loss(tokens));
    const norm = globalNorm(Object.values(grads));
    const before = snapshot(model.named);
    optimizer.minimize(() => model.loss(tokens));
    expect(optimizer.lastStep?.gradNorm).toBeCloseTo(norm, 5);
    const after = snapshot(model.named);
    const [key, g] = Object.entries(grads)[0]!;
    const name = key.slice(key.indexOf('/') + 1);
    const factor = 1e-3 / (norm + 1e-6);
    g.dataSync().forEach((x, i) =>
      expect(after.get(name)![i]).toBeCloseTo(before.get(name)![i]! - factor * x, 7),
    );
    tf.dispose([value, grads]);
    expect(
      () =>
        new BlockOptimizer({
          baseOptimizer: tf.train.sgd(1),
          namedParameters: model.named,
          clipGradNorm: -1,
        }),
    ).toThrow('clipGradNorm must be a finite number >= 0, got -1 (0 or absent: no clipping)');
    // 0 is no clipping, as Hugging Face's max_grad_norm 0.
    const unclipped = new BlockOptimizer({
      baseOptimizer: tf.train.sgd(1),
      namedParameters: model.named,
      clipGradNorm: 0,
      verbose: 0,
    });
    expect(unclipped.engine.clipGradNorm).toBeUndefined();
    unclipped.dispose();
  });

  it('is the optimizer of a LayersModel: compile + fit train only the active block', async () => {
    const model = tf.sequential({
      layers: [
        tf.layers.dense({ units: 8, inputShape: [4], activation: 'relu', name: 'layers.0.dense' }),
        tf.layers.dense({ units: 8, activation: 'relu', name: 'layers.1.dense' }),
        tf.layers.dense({ units: 2, name: 'head' }),
      ],
    });
    const named = namedVariablesFromLayersModel(model);
    expect(named.map(([n]) => n)).toEqual([
      'layers.0.dense.kernel',
      'layers.0.dense.bias',
      'layers.1.dense.kernel',
      'layers.1.dense.bias',
      'head.kernel',
      'head.bias',
    ]);
    const optimizer = new BlockOptimizer({
      baseOptimizer: tf.train.adam(0.01),
      namedParameters: named,
      switchBlockEvery: 4,
      verbose: 0,
    });
    model.compile({ optimizer, loss: 'meanSquaredError' });
    const x = tf.randomNormal([16, 4], 0, 1, 'float32', 1);
    const y = tf.randomNormal([16, 2], 0, 1, 'float32', 2);
    const before = snapshot(named);
    await model.fit(x, y, { batchSize: 4, epochs: 1, shuffle: false, verbose: 0 });
    expect(changed(before, snapshot(named)).sort()).toEqual(['layers.0.dense.bias', 'layers.0.dense.kernel']);
    expect(optimizer.activeBlock.index).toBe(1);
    const middle = snapshot(named);
    const history = await model.fit(x, y, { batchSize: 4, epochs: 1, shuffle: false, verbose: 0 });
    expect(changed(middle, snapshot(named)).sort()).toEqual(['layers.1.dense.bias', 'layers.1.dense.kernel']);
    expect(Number.isFinite(history.history.loss![0] as number)).toBe(true);
    tf.dispose([x, y]);
    model.dispose();
  });

  it('memory by kind: optimizer state and gradients exist for the active block only', () => {
    const model = createTinyLlama(CONFIG, 8);
    const optimizer = new BlockOptimizer({
      baseOptimizer: new AdamW({ learningRate: 0.01 }),
      namedParameters: model.named,
      switchBlockEvery: 1,
      verbose: 0,
    });
    const layerBytes = (i: number) =>
      model.named.filter(([n]) => n.startsWith(`model.layers.${i}.`)).reduce((s, [, v]) => s + 4 * v.size, 0);
    for (let step = 0; step < 3; step++) {
      const tokens = randomTokens(2, 5, CONFIG.vocab, step);
      const block = optimizer.activeBlock.index;
      optimizer.minimize(() => model.loss(tokens));
      tokens.dispose();
      // The update just made moments for `block`; the switch then freed them: nothing is held now.
      const memory = optimizer.memory();
      expect(memory.byKind?.optimizerState).toBe(0);
      expect(memory.byKind?.gradients).toBe(0);
      expect(memory.byKind?.weights).toBe(model.named.reduce((s, [, v]) => s + 4 * v.size, 0));
      expect(layerBytes(block)).toBeGreaterThan(0);
    }
    const steady = new BlockOptimizer({
      baseOptimizer: new AdamW({ learningRate: 0.01 }),
      namedParameters: model.named,
      switchBlockEvery: -1,
      startBlock: 2,
      verbose: 0,
    });
    const tokens = randomTokens(2, 5, CONFIG.vocab, 9);
    steady.minimize(() => model.loss(tokens));
    expect(steady.memory().byKind?.optimizerState).toBe(2 * layerBytes(2));
  });

  it("core's optimizer description trains exactly as the AdamW it describes", () => {
    const run = (baseOptimizer: ConstructorParameters<typeof BlockOptimizer>[0]['baseOptimizer']) => {
      const model = createTinyLlama(CONFIG, 4);
      const optimizer = new BlockOptimizer({
        baseOptimizer,
        namedParameters: model.named,
        switchBlockEvery: 2,
        verbose: 0,
      });
      for (let step = 0; step < 6; step++) {
        const tokens = randomTokens(2, 5, CONFIG.vocab, 40 + step);
        optimizer.minimize(() => model.loss(tokens));
        tokens.dispose();
      }
      optimizer.dispose();
      return snapshot(model.named);
    };
    const described = run({
      type: 'adamw',
      learningRate: 0.02,
      betas: [0.8, 0.99],
      epsilon: 1e-7,
      weightDecay: 0.1,
    });
    const instance = run(
      new AdamW({ learningRate: 0.02, beta1: 0.8, beta2: 0.99, epsilon: 1e-7, weightDecay: 0.1 }),
    );
    expect(described).toEqual(instance);
  });

  it('checks the learning rate once, where it is set: the base optimizer takes it as given at every step', () => {
    const model = createTinyLlama({ ...CONFIG, layers: 2 }, 3);
    const warnings: string[] = [];
    const optimizer = new BlockOptimizer({
      baseOptimizer: { type: 'adamw', learningRate: 0.01, eps: 1e-7 },
      namedParameters: model.named,
      switchBlockEvery: 2,
      verbose: 0,
      logFn: (m) => warnings.push(m),
    });
    // The description is resolved once: its deprecated field is reported once, not by every layer.
    expect(warnings).toEqual(['BAdam warning: baseOptimizer.eps is deprecated; use epsilon']);
    const checks = vi.spyOn(AdamW.prototype, 'setLearningRate');
    try {
      for (let step = 0; step < 4; step++) {
        optimizer.lr = 0.01 / (step + 1);
        const tokens = randomTokens(2, 5, CONFIG.vocab, step);
        optimizer.minimize(() => model.loss(tokens));
        tokens.dispose();
        // Mid-block the update used the rate set; after a block's last step a fresh AdamW waits for its first.
        expect((optimizer.backend.activeOptimizer as AdamW).learningRate).toBe(
          step % 2 === 0 ? 0.01 / (step + 1) : 0.01,
        );
      }
      expect(checks).not.toHaveBeenCalled();
    } finally {
      checks.mockRestore();
    }
    // The setter is the entry point, and it still refuses a bad rate.
    expect(() => {
      optimizer.lr = Number.NaN;
    }).toThrow('lr must be a finite number >= 0, got NaN');
    optimizer.dispose();
    model.dispose();
  });

  it('rejects bad options with the option, the value and what is allowed', () => {
    const model = createTinyLlama(CONFIG, 9);
    expect(
      () => new BlockOptimizer({ baseOptimizer: 'adam' as never, namedParameters: model.named }),
    ).toThrow(
      /baseOptimizer must be an optimizer description \(\{ type: 'adamw', \.\.\. \}\) or a tf.Optimizer/,
    );
    expect(() => new BlockOptimizer({ baseOptimizer: {}, namedParameters: model.named })).toThrow(
      "learningRate must be a finite number >= 0, got undefined (set it here or as the optimizer description's learningRate)",
    );
    expect(
      () => new BlockOptimizer({ baseOptimizer: { type: 'adam' as 'adamw' }, namedParameters: model.named }),
    ).toThrow('baseOptimizer.type must be one of adamw, got "adam"');
    expect(() => new BlockOptimizer({ baseOptimizer: tf.train.adam(), namedParameters: [] })).toThrow(
      /namedParameters must be a non-empty array of \[name, tf.Variable\] pairs/,
    );
    expect(
      () =>
        new BlockOptimizer({
          baseOptimizer: tf.train.adam(),
          namedParameters: [['w', tf.zeros([2]) as never]],
        }),
    ).toThrow(/namedParameters\[0\] must be a \[name, tf.Variable\] pair/);
    expect(
      () =>
        new BlockOptimizer({
          baseOptimizer: tf.train.adam(),
          namedParameters: model.named,
          switchBlockEvery: 0,
        }),
    ).toThrow('switchBlockEvery must be an integer >= 1, or -1 to never switch, got 0');
  });
});

describe('no leaks: the tensor count is constant across steps and block switches (3 block epochs)', () => {
  for (const backend of TEST_BACKENDS) {
    it(backend, async () => {
      await onBackend(backend);
      const model = createTinyLlama(CONFIG, 10);
      const optimizer = new BlockOptimizer({
        baseOptimizer: tf.train.adam(0.01),
        namedParameters: model.named,
        switchBlockEvery: 2,
        switchMode: 'random',
        verbose: 0,
      });
      const tokens = randomTokens(2, 5, CONFIG.vocab, 1);
      const baseline = tf.memory();
      const counts: number[] = [];
      const bytes: number[] = [];
      for (let step = 0; step < 3 * 3 * 2; step++) {
        optimizer.minimize(() => model.loss(tokens));
        counts.push(tf.memory().numTensors);
        bytes.push(tf.memory().numBytes);
      }
      expect(optimizer.engine.blockEpoch).toBe(3);
      // K = 2: after the first step of a block its Adam state exists; after the second the block leaves,
      // its state is freed and the count is back at the baseline. The same at every step of 3 epochs.
      counts.forEach((c, i) => expect(c).toBe(counts[i % 2]));
      bytes.forEach((b, i) => expect(b).toBe(bytes[i % 2]));
      expect(counts[1]).toBe(baseline.numTensors);
      expect(bytes[1]).toBe(baseline.numBytes);
      optimizer.dispose();
      tokens.dispose();
      model.dispose();
      tf.disposeVariables();
    });
  }
});

describe('useTfjsBackend', () => {
  it('detects what is installed: tensorflow (tfjs-node) is not here, so it says what to install', async () => {
    await expect(useTfjsBackend('tensorflow')).rejects.toThrow(
      /install @tensorflow\/tfjs-node-gpu or @tensorflow\/tfjs-node next to @badam\/tfjs/,
    );
    expect(await useTfjsBackend('auto')).toBe('wasm');
    expect(await useTfjsBackend('cpu')).toBe('cpu');
    await expect(useTfjsBackend('webgpu' as 'cpu')).rejects.toThrow(
      /backend must be one of auto, cpu, wasm, tensorflow/,
    );
  });
});
