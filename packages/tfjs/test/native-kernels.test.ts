import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { AdamW, BlockOptimizer, useNativeMatMul } from '../src/index.js';
import { onBackend, TEST_BACKENDS } from './fixtures/backends.js';
import { createTinyLlama, randomTokens, snapshot } from './fixtures/tiny-llama.js';

const CASES: Array<[number[], number[], boolean, boolean]> = [
  [[5, 7], [7, 3], false, false],
  [[7, 5], [7, 3], true, false],
  [[5, 7], [3, 7], false, true],
  [[7, 5], [3, 7], true, true],
  [[2, 3, 5, 7], [2, 3, 7, 4], false, false], // attention-style batches
  [[4, 6, 8], [8, 9], false, false], // batch against one matrix
  [[6, 8], [4, 8, 9], false, false],
  [[2, 1, 6, 8], [1, 3, 8, 2], false, false], // a broadcast the native path leaves to tfjs
  [[130, 257], [70, 257], false, true],
];

for (const backend of TEST_BACKENDS) {
  describe(`native BatchMatMul on ${backend}`, () => {
    let expected: Float32Array[] = [];
    beforeAll(async () => {
      await onBackend(backend);
      // What tfjs's own kernel computes, before the native one replaces it.
      expected = CASES.map(([sa, sb, ta, tb], i) =>
        tf.tidy(
          () =>
            tf
              .matMul(
                tf.randomNormal(sa, 0, 1, 'float32', i + 1),
                tf.randomNormal(sb, 0, 1, 'float32', i + 100),
                ta,
                tb,
              )
              .dataSync() as Float32Array,
        ),
      );
      const info = await useNativeMatMul();
      expect(info.backends).toContain(backend);
      expect(['avx512', 'avx2', 'scalar']).toContain(info.kernel);
    });

    it("matches tfjs's kernel on every shape, transpose and batch pattern", () => {
      CASES.forEach(([sa, sb, ta, tb], i) => {
        const got = tf.tidy(() =>
          tf
            .matMul(
              tf.randomNormal(sa, 0, 1, 'float32', i + 1),
              tf.randomNormal(sb, 0, 1, 'float32', i + 100),
              ta,
              tb,
            )
            .dataSync(),
        );
        expect(got.length).toBe(expected[i]!.length);
        got.forEach((x, j) => expect(x, `case ${i} entry ${j}`).toBeCloseTo(expected[i]![j]!, 3));
      });
    });

    it('gives correct gradients (against finite differences) and trains', () => {
      const model = createTinyLlama({ vocab: 16, hidden: 8, intermediate: 12, layers: 2, heads: 2 }, 4);
      const tokens = randomTokens(2, 6, 16, 3);
      const w = model.named.find(([n]) => n === 'model.layers.1.mlp.up_proj.weight')![1];
      const { grads } = tf.variableGrads(() => model.loss(tokens), [w]);
      const analytic = grads[w.name]!.dataSync();
      const base = Float32Array.from(w.dataSync());
      const eps = 1e-2;
      for (const index of [0, 17, 45]) {
        const plus = Float32Array.from(base);
        plus[index]! += eps;
        w.assign(tf.tensor(plus, w.shape));
        const lp = model.loss(tokens).dataSync()[0]!;
        const minus = Float32Array.from(base);
        minus[index]! -= eps;
        w.assign(tf.tensor(minus, w.shape));
        const lm = model.loss(tokens).dataSync()[0]!;
        expect(analytic[index]).toBeCloseTo((lp - lm) / (2 * eps), 3);
      }
      w.assign(tf.tensor(base, w.shape));
      const optimizer = new BlockOptimizer({
        baseOptimizer: new AdamW({ learningRate: 0.01 }),
        namedParameters: model.named,
        switchBlockEvery: 2,
        verbose: 0,
      });
      const before = snapshot(model.named);
      for (let i = 0; i < 4; i++) optimizer.minimize(() => model.loss(tokens));
      expect(snapshot(model.named).get('model.layers.1.mlp.up_proj.weight')).not.toEqual(
        before.get('model.layers.1.mlp.up_proj.weight'),
      );
      tf.disposeVariables();
    });
  });
}
