import { adamwUpdate, resolveAdamWConfig } from '@badam/core';
import * as tf from '@tensorflow/tfjs';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AdamW } from '../src/index.js';
import { onBackend, TEST_BACKENDS } from './fixtures/backends.js';

for (const backend of TEST_BACKENDS) {
  describe(`AdamW on ${backend}`, () => {
    beforeAll(async () => {
      await onBackend(backend);
    });
    afterEach(() => tf.disposeVariables());

    it('equals the reference update (torch.optim.AdamW) over several steps, decay skipped for biases and norms', () => {
      const config = { learningRate: 0.05, beta1: 0.8, beta2: 0.99, epsilon: 1e-6, weightDecay: 0.2 };
      const optimizer = new AdamW(config);
      const initial = { w: [0.5, -1.5, 2, 0.25], b: [0.1, -0.2] };
      const w = tf.variable(tf.tensor(initial.w), true, `${backend}/layers.0.proj.weight`);
      const bias = tf.variable(tf.tensor(initial.b), true, `${backend}/layers.0.proj.bias`);
      const refW = Float32Array.from(initial.w);
      const refB = Float32Array.from(initial.b);
      const state = {
        mw: new Float32Array(4),
        vw: new Float32Array(4),
        mb: new Float32Array(2),
        vb: new Float32Array(2),
      };
      const resolved = resolveAdamWConfig({ beta1: 0.8, beta2: 0.99, eps: 1e-6, weightDecay: 0.2 });
      for (let step = 1; step <= 5; step++) {
        const gw = [0.3 * step, -0.1, 0.7, -2 / step];
        const gb = [1, -step];
        optimizer.applyGradients({ [w.name]: tf.tensor(gw), [bias.name]: tf.tensor(gb) });
        adamwUpdate(refW, Float32Array.from(gw), state.mw, state.vw, resolved, {
          lr: 0.05,
          step,
          gradientScale: 1,
          decay: true,
        });
        adamwUpdate(refB, Float32Array.from(gb), state.mb, state.vb, resolved, {
          lr: 0.05,
          step,
          gradientScale: 1,
          decay: false,
        });
      }
      w.dataSync().forEach((x, i) => expect(x).toBeCloseTo(refW[i]!, 6));
      bias.dataSync().forEach((x, i) => expect(x).toBeCloseTo(refB[i]!, 6));
      expect(optimizer.stateBytes()).toBe(2 * 4 * (4 + 2));
      optimizer.dispose();
      expect(optimizer.stateBytes()).toBe(0);
    });

    it('getWeights / setWeights continue the same trajectory', async () => {
      const a = tf.variable(tf.tensor([1, 2, 3]), true, `a.weight.${backend}`);
      const first = new AdamW({ learningRate: 0.1 });
      first.applyGradients({ [a.name]: tf.tensor([0.5, -0.5, 1]) });
      const saved = await first.getWeights();
      const copies = saved.map((w) => ({ name: w.name, tensor: tf.clone(w.tensor) }));
      const second = new AdamW({ learningRate: 0.1 });
      await second.setWeights(copies);
      const snapshot = a.dataSync().slice();
      first.applyGradients({ [a.name]: tf.tensor([1, 1, -1]) });
      const afterFirst = a.dataSync().slice();
      a.assign(tf.tensor(snapshot));
      second.applyGradients({ [a.name]: tf.tensor([1, 1, -1]) });
      expect(a.dataSync()).toEqual(afterFirst);
      expect(second.iterations).toBe(2);
    });

    it('getWeights makes its scalars once per call: the next call and dispose free them', async () => {
      const a = tf.variable(tf.tensor([1, 2, 3]), true, `a.weight.leak.${backend}`);
      const gradient = tf.tensor([0.5, -0.5, 1]);
      const before = tf.memory().numTensors;
      const optimizer = new AdamW({ learningRate: 0.1 });
      optimizer.applyGradients({ [a.name]: gradient });
      const held = tf.memory().numTensors; // m and v
      await optimizer.getWeights();
      const afterOne = tf.memory().numTensors; // and the iterations and step scalars
      expect(afterOne).toBe(held + 2);
      for (let i = 0; i < 3; i++) await optimizer.getWeights();
      expect(tf.memory().numTensors).toBe(afterOne);
      optimizer.dispose();
      expect(tf.memory().numTensors).toBe(before);
      gradient.dispose();
    });
  });
}

describe('AdamW options', () => {
  it('rejects bad hyperparameters, and round-trips its config', () => {
    expect(() => new AdamW({ beta1: 1 })).toThrow('beta1 must be a number in [0, 1), got 1');
    expect(() => new AdamW({ weightDecay: -1 })).toThrow('weightDecay must be a finite number >= 0, got -1');
    const config = new AdamW({ learningRate: 0.3, weightDecay: 0.05 }).getConfig();
    expect(AdamW.fromConfig(AdamW, config).getConfig()).toEqual(config);
  });
});
