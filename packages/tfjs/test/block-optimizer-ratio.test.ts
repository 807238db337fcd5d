import { sparseAdamUpdate, UpdateMaskSchedule } from '@badam/ratio';
import * as tf from '@tensorflow/tfjs';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BlockOptimizerRatio, parameterInfoOf } from '../src/index.js';
import { onBackend, TEST_BACKENDS } from './fixtures/backends.js';
import { createTinyLlama, randomTokens, snapshot } from './fixtures/tiny-llama.js';

for (const backend of TEST_BACKENDS) {
  describe(`BlockOptimizerRatio on ${backend}`, () => {
    beforeAll(async () => {
      await onBackend(backend);
    });
    afterEach(() => tf.disposeVariables());

    it('adjacent, hand-derived: the first steps move only the window, then the window moves and state resets', () => {
      const w = tf.variable(tf.zeros([4, 5]), true, `model.layers.0.w.${backend}`);
      const optimizer = new BlockOptimizerRatio({
        namedParameters: [['model.layers.0.mlp.w', w]],
        updateRatio: 0.25,
        switchBlockEvery: 2,
        preserveThreshold: 0,
        learningRate: 0.1,
        verbose: 0,
      });
      const grad = tf.tensor(
        Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? 1 : -2)),
        [4, 5],
      );
      // Step 1 (Adam t = 1): entries 0..4 move by -lr * sign(g) (up to eps); the others stay 0.
      optimizer.applyGradients({ [w.name]: grad });
      const step1 = w.dataSync();
      expect([...step1.slice(0, 5)].map((x) => Number(x.toFixed(6)))).toEqual([-0.1, 0.1, -0.1, 0.1, -0.1]);
      expect([...step1.slice(5)].every((x) => x === 0)).toBe(true);
      // Step 2 (t = 2, same gradient): m / sqrt(v) stays sign(g), bias corrections cancel: another lr.
      optimizer.applyGradients({ [w.name]: grad });
      expect(Number(w.dataSync()[0]!.toFixed(5))).toBe(-0.2);
      // switchBlockEvery = 2: the window is now 5..9 with fresh state (t = 1 again: a full lr step).
      expect(optimizer.masks.window).toBe(1);
      optimizer.applyGradients({ [w.name]: grad });
      const step3 = w.dataSync();
      expect(Number(step3[0]!.toFixed(5))).toBe(-0.2);
      expect([...step3.slice(5, 10)].map((x) => Number(x.toFixed(6)))).toEqual([0.1, -0.1, 0.1, -0.1, 0.1]);
      expect([...step3.slice(10)].every((x) => x === 0)).toBe(true);
    });

    it('scatter: equals the array reference (sparseAdamUpdate on the same windows) across a switch', () => {
      const shape = [6, 7];
      const initial = Float32Array.from({ length: 42 }, (_, i) => Math.sin(i));
      const w = tf.variable(tf.tensor(initial, shape), true, `model.layers.1.w.${backend}`);
      const options = {
        updateRatio: 0.3,
        switchBlockEvery: 3,
        maskMode: 'scatter' as const,
        preserveThreshold: 0,
        seed: 4,
      };
      const optimizer = new BlockOptimizerRatio({
        namedParameters: [['model.layers.1.mlp.w', w]],
        learningRate: 0.05,
        verbose: 0,
        ...options,
      });
      const masks = new UpdateMaskSchedule(parameterInfoOf([['model.layers.1.mlp.w', w]]), options);
      const ref = Float32Array.from(initial);
      let m = new Float32Array(12);
      let v = new Float32Array(12);
      for (let step = 0; step < 7; step++) {
        const g = Float32Array.from({ length: 42 }, (_, i) => Math.cos(i * (step + 1)));
        optimizer.applyGradients({ [w.name]: tf.tensor(g, shape) });
        sparseAdamUpdate(
          ref,
          g,
          masks.indices('model.layers.1.mlp.w'),
          m,
          v,
          { lr: 0.05, beta1: 0.9, beta2: 0.999, eps: 1e-8 },
          masks.stepsInWindow + 1,
        );
        if (masks.advance().reset) {
          m = new Float32Array(12);
          v = new Float32Array(12);
        }
      }
      w.dataSync().forEach((x, i) => expect(x).toBeCloseTo(ref[i]!, 5));
    });

    it('Adam state exists only for masked entries: m, v of k entries (and k kept indices), never dense', () => {
      const model = createTinyLlama({ vocab: 16, hidden: 16, intermediate: 24, layers: 2, heads: 2 }, 1);
      const optimizer = new BlockOptimizerRatio({
        namedParameters: model.named,
        updateRatio: 0.1,
        maskMode: 'scatter',
        verbose: 0,
      });
      const tokens = randomTokens(2, 5, 16, 1);
      const before = snapshot(model.named);
      optimizer.minimize(() => model.loss(tokens));
      const masked = optimizer.masks.parameters.reduce((s, p) => s + p.maskSize, 0);
      const indexed = optimizer.masks.parameters.filter((p) => !p.whole).reduce((s, p) => s + p.maskSize, 0);
      expect(optimizer.memory().byKind?.optimizerState).toBe(8 * masked + 4 * indexed);
      // Dense state would be 8 bytes per trained entry: ours is about 2 * updateRatio of that, plus indices.
      const trained = optimizer.masks.parameters.reduce((s, p) => s + p.size, 0);
      expect(8 * masked).toBeLessThan(0.15 * 8 * trained);
      // Only masked entries of trained parameters moved; embedding and lm_head did not.
      const after = snapshot(model.named);
      expect(after.get('model.embed_tokens.weight')).toEqual(before.get('model.embed_tokens.weight'));
      expect(after.get('lm_head.weight')).toEqual(before.get('lm_head.weight'));
      const up = 'model.layers.0.mlp.up_proj.weight';
      const moved = after.get(up)!.reduce((n, x, i) => n + (x !== before.get(up)![i] ? 1 : 0), 0);
      expect(moved).toBeLessThanOrEqual(optimizer.masks.parameter(up).maskSize);
      expect(moved).toBeGreaterThan(0);
      const baseline = tf.memory().numTensors;
      for (let i = 0; i < 5; i++) optimizer.minimize(() => model.loss(tokens));
      expect(tf.memory().numTensors).toBe(baseline);
      optimizer.dispose();
    });

    it('leaves no tensor behind: across window switches, a restored state, and dispose', () => {
      const model = createTinyLlama({ vocab: 16, hidden: 16, intermediate: 24, layers: 2, heads: 2 }, 3);
      const tokens = randomTokens(2, 5, 16, 3);
      const memory = () => {
        const { numTensors, numBytes } = tf.memory();
        return { numTensors, numBytes };
      };
      const before = memory();
      const optimizer = new BlockOptimizerRatio({
        namedParameters: model.named,
        updateRatio: 0.1,
        switchBlockEvery: 2, // a fresh window, and fresh Adam state, every 2 steps
        verbose: 0,
      });
      const window = () => {
        optimizer.minimize(() => model.loss(tokens));
        optimizer.minimize(() => model.loss(tokens));
      };
      window();
      const betweenWindows = memory();
      for (let i = 0; i < 3; i++) {
        window();
        expect(memory()).toEqual(betweenWindows);
      }
      // Mid-window, the state exists: restoring it replaces it, tensor for tensor.
      optimizer.minimize(() => model.loss(tokens));
      const midWindow = memory();
      expect(optimizer.stateTensors().length).toBeGreaterThan(0);
      optimizer.loadStateTensors(optimizer.stateTensors());
      expect(memory()).toEqual(midWindow);
      optimizer.dispose();
      expect(memory()).toEqual(before);
    });
  });
}

describe('BlockOptimizerRatio training', () => {
  it('lowers the loss of a small model (keepMask false rebuilds the windows each step)', async () => {
    await onBackend('wasm');
    const model = createTinyLlama({ vocab: 16, hidden: 16, intermediate: 24, layers: 2, heads: 2 }, 2);
    const optimizer = new BlockOptimizerRatio({
      namedParameters: model.named,
      updateRatio: 0.5,
      switchBlockEvery: 5,
      keepMask: false,
      learningRate: 0.02,
      includeLmHead: true,
      verbose: 0,
    });
    const tokens = randomTokens(4, 8, 16, 3);
    const first = (optimizer.minimize(() => model.loss(tokens), true) as tf.Scalar).dataSync()[0]!;
    let last = first;
    for (let i = 0; i < 40; i++)
      last = (optimizer.minimize(() => model.loss(tokens), true) as tf.Scalar).dataSync()[0]!;
    expect(last).toBeLessThan(first * 0.8);
    tf.disposeVariables();
  });
});

describe('BlockOptimizerRatio leaves tensors that share the weight buffer alone', () => {
  for (const backend of TEST_BACKENDS) {
    it(backend, async () => {
      await onBackend(backend);
      const w = tf.variable(tf.zeros([10, 12]), true, `${backend}/model.layers.0.shared`);
      const copy = tf.clone(w); // shares w's data buffer until w is reassigned
      const optimizer = new BlockOptimizerRatio({
        namedParameters: [['model.layers.0.w', w]],
        updateRatio: 0.2,
        learningRate: 0.1,
        verbose: 0,
      });
      optimizer.applyGradients({ [w.name]: tf.ones([10, 12]) });
      expect([...copy.dataSync()].every((x) => x === 0)).toBe(true);
      expect([...w.dataSync()].filter((x) => x !== 0)).toHaveLength(24);
      tf.disposeVariables();
    });
  }
});

describe("BlockOptimizerRatio's option names are BlockOptimizer's", () => {
  it('learningRate, switchBlockEvery and epsilon; the old lr, switchEvery and eps still work with a warning', async () => {
    await onBackend('cpu');
    const w = tf.variable(tf.zeros([10, 12]), true, 'names/model.layers.0.w');
    const warnings: string[] = [];
    const optimizer = new BlockOptimizerRatio({
      namedParameters: [['model.layers.0.w', w]],
      lr: 0.1,
      switchEvery: 3,
      eps: 1e-6,
      verbose: 0,
      logFn: (m) => warnings.push(m),
    });
    expect([optimizer.learningRate, optimizer.masks.switchBlockEvery, optimizer.eps]).toEqual([0.1, 3, 1e-6]);
    expect(warnings).toEqual([
      'BAdam warning: option lr is deprecated; use learningRate',
      'BAdam warning: option eps is deprecated; use epsilon',
      'BAdam warning: option switchEvery is deprecated; use switchBlockEvery',
    ]);
    expect(
      () =>
        new BlockOptimizerRatio({ namedParameters: [['model.layers.0.w', w]], lr: 0.1, learningRate: 0.1 }),
    ).toThrow('lr must be absent when learningRate is given');
    optimizer.dispose();
    tf.disposeVariables();
  });
});
