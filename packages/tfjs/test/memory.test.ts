import { estimateMemory } from '@badam/core';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdamW, BlockOptimizer, parameterInfoOf } from '../src/index.js';
import { onBackend } from './fixtures/backends.js';
import { bytesOf, measureGradientPass, measureStep } from './fixtures/memory-probe.js';
import { createTinyLlama, randomTokens } from './fixtures/tiny-llama.js';

// The Llama-shaped model of the issue: 8 layers, hidden 256 (6.46M parameters, 25.8 MB in fp32).
const CONFIG = { vocab: 256, hidden: 256, intermediate: 688, layers: 8, heads: 4 };
const D = CONFIG.layers;

describe('memory: BAdam against full Adam on tfjs (wasm), measured with tf.memory()', () => {
  beforeAll(async () => {
    await onBackend('wasm');
  });
  afterAll(() => tf.disposeVariables());

  it("gradients + optimizer state are at most 1/D of Adam's, and the totals agree with core's model within 5%", async () => {
    const model = createTinyLlama(CONFIG, 11);
    const tokens = randomTokens(1, 16, CONFIG.vocab, 1);
    const loss = () => model.loss(tokens);
    const weights = bytesOf(model.named);
    const parameters = parameterInfoOf(model.named);
    const all = model.named.map(([, v]) => v);
    const block0 = model.named.filter(([n]) => n.startsWith('model.layers.0.')).map(([, v]) => v);

    // Full Adam: two steps (the first creates the moments), the second measured.
    const adam = new AdamW({ learningRate: 1e-3, weightDecay: 0 });
    const adamBase = tf.memory().numBytes;
    adam.minimize(loss, false, all);
    const adamStep = await measureStep(() => adam.minimize(loss, false, all));
    const adamState = adamStep.after - adamBase;
    const adamGradients = 4 * all.reduce((s, v) => s + v.size, 0);
    const adamPass = await measureGradientPass(loss, all); // activations + gradients of a plain backward
    adam.dispose();

    // BAdam on block 0 (the lowest block: backward runs through every layer), same two steps.
    const badam = new BlockOptimizer({
      baseOptimizer: new AdamW({ learningRate: 1e-3, weightDecay: 0 }),
      namedParameters: model.named,
      switchBlockEvery: -1,
      verbose: 0,
    });
    const badamBase = tf.memory().numBytes;
    badam.minimize(loss);
    const badamStep = await measureStep(() => badam.minimize(loss));
    const badamState = badamStep.after - badamBase;
    const badamGradients = 4 * block0.reduce((s, v) => s + v.size, 0);
    const badamPass = await measureGradientPass(loss, block0);
    expect(badam.memory().byKind?.optimizerState).toBe(badamState);

    // 1) Gradient + optimizer bytes: BAdam's at most 1/D of Adam's (no activeModules here).
    expect(badamGradients + badamState).toBeLessThanOrEqual((adamGradients + adamState) / D);
    // The state is exactly Adam's two moments of the block (tf.train.adam's two beta-power scalars were
    // made with the optimizer, before the baseline).
    expect(badamState).toBe(2 * bytesOf(model.named, 'model.layers.0.'));
    expect(adamState).toBe(2 * weights);

    // 2) Totals against core's memory model. tfjs keeps every forward intermediate on its tape, which no
    // closed-form activation estimate captures, so the activation term is measured: the peak of a plain
    // forward + backward over the same span (minus its gradients). Everything else is the model's.
    const blocks = [model.named.filter(([n]) => n.startsWith('model.layers.0.')).map(([n]) => n)];
    const modelBadam = estimateMemory({
      method: 'badam',
      parameters,
      blocks,
      activationBytes: badamPass - badamGradients,
    });
    const modelAdam = estimateMemory({
      method: 'adam',
      parameters,
      activationBytes: adamPass - adamGradients,
    });
    const measuredBadam = badamStep.peak - (badamBase - weights); // minus what is not the model (tokens)
    const measuredAdam = adamStep.peak - (adamBase - weights);
    expect(Math.abs(measuredBadam - modelBadam.total) / modelBadam.total).toBeLessThan(0.05);
    expect(Math.abs(measuredAdam - modelAdam.total) / modelAdam.total).toBeLessThan(0.05);
    expect(modelBadam.weights).toBe(weights);
    expect(modelBadam.masters).toBe(0); // fp32 weights are their own masters on tfjs
    badam.dispose();
    tokens.dispose();
  }, 120_000);
});

describe('trackPeakMemory', () => {
  it('sees the same peak as tf.profile, without profiling', async () => {
    await onBackend('cpu');
    const { trackPeakMemory } = await import('../src/index.js');
    const model = createTinyLlama({ vocab: 16, hidden: 8, intermediate: 12, layers: 2, heads: 2 }, 3);
    const tokens = randomTokens(2, 6, 16, 1);
    const vars = model.named.map(([, v]) => v);
    const step = () => {
      const { value, grads } = tf.variableGrads(() => model.loss(tokens), vars);
      tf.dispose([value, grads]);
    };
    const profiled = (await tf.profile(step)).peakBytes;
    const tracker = trackPeakMemory();
    step();
    expect(tracker.peakBytes()).toBe(profiled);
    tracker.reset();
    expect(tracker.peakBytes()).toBe(tf.memory().numBytes);
    tracker.stop();
    expect(tf.memory().numBytes).toBe(tracker.peakBytes());
    model.dispose();
  });
});
