import '@tensorflow/tfjs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlockOptimizer } from '@badam/core';
import { LlamaForCausalLM, llamaWeights, saveLlama } from '@badam/models';
import { useTfjsBackend } from '@badam/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CudaBlockBackend, Device, DeviceLlama, type DeviceLlamaBatch } from '../src/index.js';
import { referenceModel, smallBatch, smallLlamaConfig } from './llama-fixture.js';

let device: Device;
let dir: string;
beforeAll(async () => {
  await useTfjsBackend('cpu');
  device = Device.cpu();
  dir = await mkdtemp(join(tmpdir(), 'device-llama-'));
});
afterAll(async () => {
  tf.disposeVariables();
  await rm(dir, { recursive: true, force: true });
});

const config = smallLlamaConfig({ tied: false });

describe('DeviceLlama.create', () => {
  it("draws the same initial weights as LlamaForCausalLM for the same seed, in HF's named_parameters order", () => {
    for (const tied of [false, true]) {
      const c = smallLlamaConfig({ tied, qkvBias: tied });
      const reference = new LlamaForCausalLM(c, { seed: 5, initializerRange: 0.03 });
      const model = DeviceLlama.create(device, c, { seed: 5, initializerRange: 0.03, dtype: 'float32' });
      try {
        const expected = llamaWeights(reference, 'float32');
        expect(model.parameters().map((p) => p.name)).toEqual(reference.namedParameters.map(([n]) => n));
        const actual = model.readWeights();
        expect(actual.map((a) => a.name)).toEqual(expected.map((e) => e.name));
        actual.forEach((a, i) => {
          expect(a.shape, a.name).toEqual(expected[i]!.shape);
          expect(a.data, a.name).toEqual(expected[i]!.data);
        });
      } finally {
        model.dispose();
        reference.dispose();
      }
    }
  });

  it('rounds to bf16 and accounts the weights as weights', () => {
    const before = device.memory().byKind.weights;
    const model = DeviceLlama.create(device, config, { seed: 1 });
    expect(model.dtype).toBe('bfloat16');
    const params = model.parameters();
    const bytes = params.reduce((s, p) => s + p.shape.reduce((a, b) => a * b, 1) * 2, 0);
    expect(device.memory().byKind.weights - before).toBe(bytes);
    model.dispose();
    expect(device.memory().byKind.weights).toBe(before);
  });
});

describe('DeviceLlama.evaluate', () => {
  it('loss and next-token accuracy as the tfjs model computes them (argmax at s against label s + 1)', () => {
    const { model: reference, arrays } = referenceModel(config, 3);
    const model = DeviceLlama.fromNamedArrays(device, config, arrays, {
      dtype: 'float32',
      lossChunkTokens: 4,
    });
    try {
      const batch = smallBatch(config.vocabSize);
      const { batchSize: b, seqLen: s } = batch;
      const mask = Int32Array.from({ length: b * s }, (_, i) =>
        i % s < batch.lengths![Math.floor(i / s)]! ? 1 : 0,
      );
      const ids = tf.tensor2d(batch.inputIds, [b, s], 'int32');
      const attention = tf.tensor2d(mask, [b, s], 'int32');
      const logits = reference.forward(ids, attention);
      const predicted = tf.argMax(logits, -1).dataSync();
      const loss = reference.loss({
        inputIds: ids,
        labels: tf.tensor2d(batch.labels, [b, s], 'int32'),
        attentionMask: attention,
      });
      let correct = 0;
      let counted = 0;
      for (let r = 0; r < b; r++) {
        for (let p = 0; p + 1 < s; p++) {
          const label = batch.labels[r * s + p + 1]!;
          if (label === -100) continue;
          counted++;
          if (predicted[r * s + p] === label) correct++;
        }
      }
      const result = model.evaluate(batch);
      expect(result.counted).toBe(counted);
      expect(result.labelTokens).toBe(counted);
      expect(result.correct).toBe(correct);
      expect(Math.abs(result.loss - loss.dataSync()[0]!) / result.loss).toBeLessThan(1e-5);
    } finally {
      model.dispose();
    }
  });
});

describe('DeviceLlama memory', () => {
  it('frees everything a step made, and keeps no activations below the lowest trainable layer', () => {
    const model = DeviceLlama.create(device, config, { seed: 2, dtype: 'float32' });
    const batch = smallBatch(config.vocabSize);
    const peakOf = (trainable: string[], checkpointing = false) => {
      const grads = new Map(
        trainable.map((n) => [
          n,
          device.zeros(model.parameters().find((p) => p.name === n)!.shape, 'float32', 'gradients'),
        ]),
      );
      const steady = device.memory().inUse;
      device.resetPeaks();
      const m = checkpointing
        ? DeviceLlama.fromNamedArrays(device, config, model.readWeights(), {
            dtype: 'float32',
            gradientCheckpointing: true,
          })
        : model;
      const base = device.memory().inUse;
      device.resetPeaks();
      m.lossAndGradients(batch, trainable, (n) => grads.get(n)!);
      const peak = device.memory().peakInUse - base;
      const { activations, workspace } = device.memory().byKind;
      expect(activations, 'activations left after the step').toBe(0);
      expect(workspace, 'workspace left after the step').toBe(0);
      if (m !== model) m.dispose();
      expect(device.memory().inUse).toBe(steady);
      for (const g of grads.values()) g.free();
      return peak;
    };
    const top = peakOf(['model.layers.2.mlp.down_proj.weight']);
    const middle = peakOf(['model.layers.1.mlp.down_proj.weight']);
    const bottom = peakOf(['model.embed_tokens.weight']);
    const bottomCheckpointed = peakOf(['model.embed_tokens.weight'], true);
    expect(top).toBeLessThan(middle);
    expect(middle).toBeLessThan(bottom);
    expect(bottomCheckpointed).toBeLessThan(bottom);
    model.dispose();
  });
});

describe('DeviceLlama with CudaBlockBackend and BlockOptimizer', () => {
  it('trains: the backend updates the very tensors the model computes with, and the loss falls', () => {
    const model = DeviceLlama.create(device, config, { seed: 4, dtype: 'float32' });
    const backend = new CudaBlockBackend(device, model.parameters());
    const optimizer = new BlockOptimizer(
      {
        baseOptimizer: { type: 'adamw', learningRate: 3e-3 },
        namedParameters: model.parameters(),
        switchBlockEvery: 3,
        switchMode: 'descending',
        includeLmHead: true,
        verbose: 0,
      },
      backend,
    );
    const batch = smallBatch(config.vocabSize);
    const losses: number[] = [];
    for (let step = 0; step < 12; step++) {
      const { loss } = model.lossAndGradients(batch, backend.trainableNames, (n) => backend.gradientOf(n));
      losses.push(loss);
      optimizer.step();
    }
    expect(losses[11]!).toBeLessThan(losses[0]! - 0.2);
    backend.dispose(); // frees the weights it took over: the model's own tensors
    expect(() => model.readWeights()).toThrow(/freed/);
    model.dispose(); // harmless after the backend
  });
});

describe('DeviceLlama save / fromPretrained', () => {
  it('round-trips bf16 bits exactly, single file and sharded, with torch_dtype', async () => {
    const model = DeviceLlama.create(device, config, { seed: 9 });
    try {
      const bits = model.parameters().map((p) => (p.values as { readRaw(): Uint16Array }).readRaw());
      for (const [sub, maxShardBytes] of [
        ['single', undefined],
        ['sharded', 40_000],
      ] as const) {
        const target = join(dir, sub);
        await model.save(target, maxShardBytes === undefined ? {} : { maxShardBytes });
        const files = await readdir(target);
        if (sub === 'single') expect(files.sort()).toEqual(['config.json', 'model.safetensors']);
        else {
          expect(files).toContain('model.safetensors.index.json');
          expect(files.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f)).length).toBeGreaterThan(
            2,
          );
        }
        const json = JSON.parse(await readFile(join(target, 'config.json'), 'utf8'));
        expect(json.torch_dtype).toBe('bfloat16');
        const loaded = await DeviceLlama.fromPretrained(device, target);
        try {
          expect(loaded.dtype).toBe('bfloat16');
          expect(loaded.config).toEqual({ ...config, dtype: 'bfloat16' });
          loaded.parameters().forEach((p, i) => {
            expect((p.values as { readRaw(): Uint16Array }).readRaw(), p.name).toEqual(bits[i]);
          });
        } finally {
          loaded.dispose();
        }
      }
    } finally {
      model.dispose();
    }
  });

  it("loads a sharded fp32 folder written by @badam/models' saveLlama, cast to bf16 on the device", async () => {
    const reference = new LlamaForCausalLM(smallLlamaConfig({ tied: true }), { seed: 6 });
    const target = join(dir, 'from-models');
    await saveLlama(reference, target, { dtype: 'float32', maxShardBytes: 50_000 });
    expect(await readdir(target)).toContain('model.safetensors.index.json');
    const expected = llamaWeights(reference, 'float32');
    const fp32 = await DeviceLlama.fromPretrained(device, target, { dtype: 'float32' });
    const bf16 = await DeviceLlama.fromPretrained(device, target);
    try {
      expect(fp32.readWeights().map((w) => w.data)).toEqual(expected.map((e) => e.data));
      bf16.readWeights().forEach((w, i) => {
        const e = expected[i]!.data as Float32Array;
        const d = w.data as Float32Array;
        for (let j = 0; j < e.length; j += 97)
          expect(Math.abs(d[j]! - e[j]!)).toBeLessThanOrEqual(Math.abs(e[j]!) / 256);
      });
      // A bf16 folder loaded as fp32: the bits widen exactly.
      await bf16.save(join(dir, 'bf16'));
      const widened = await DeviceLlama.fromPretrained(device, join(dir, 'bf16'), { dtype: 'float32' });
      expect(widened.readWeights().map((w) => w.data)).toEqual(bf16.readWeights().map((w) => w.data));
      widened.dispose();
    } finally {
      fp32.dispose();
      bf16.dispose();
      reference.dispose();
    }
  });

  it('names the missing tensor and the shape that does not match', async () => {
    const model = DeviceLlama.create(device, config, { seed: 1 });
    const arrays = model.readWeights();
    model.dispose();
    expect(() => DeviceLlama.fromNamedArrays(device, config, arrays.slice(1))).toThrow(
      /missing model\.embed_tokens\.weight \[61, 64\]/,
    );
    const bad = arrays.map((a) => (a.name === 'model.norm.weight' ? { ...a, shape: [32, 2] } : a));
    expect(() => DeviceLlama.fromNamedArrays(device, config, bad)).toThrow(
      /model\.norm\.weight shape.*\[64\]/,
    );
    await expect(DeviceLlama.fromPretrained(device, join(dir, 'nowhere'))).rejects.toThrow(/config\.json/);
  });
});

describe('DeviceLlama input checks', () => {
  let model: DeviceLlama;
  beforeAll(() => {
    model = DeviceLlama.create(device, config, { seed: 1, dtype: 'float32', maxPositions: 16 });
  });
  const ok = smallBatch(config.vocabSize);
  const run =
    (batch: Partial<DeviceLlamaBatch>, trainable: string[] = []) =>
    () =>
      model.lossAndGradients({ ...ok, ...batch }, trainable, () => {
        throw new Error('no gradient expected');
      });
  afterAll(() => model.dispose());

  it('rejects token ids and labels outside the vocabulary, with the fix', () => {
    const ids = ok.inputIds.slice();
    ids[4] = 61;
    expect(run({ inputIds: ids })).toThrow(/batch\.inputIds\[4\] must be a token id in \[0, 61\).*got 61/);
    const labels = ok.labels.slice();
    labels[5] = -1;
    expect(run({ labels })).toThrow(/batch\.labels\[5\] must be -100 \(ignored\) or a token id in \[0, 61\)/);
    labels[5] = 99;
    expect(() => model.evaluate({ ...ok, labels })).toThrow(
      /mark positions that are not trained on with -100/,
    );
  });

  it('rejects shapes that do not match and sequences past maxPositions', () => {
    expect(run({ inputIds: ok.inputIds.subarray(1) })).toThrow(
      /batch\.inputIds must be an Int32Array of batchSize \* seqLen = 2 \* 9 = 18 values/,
    );
    expect(run({ lengths: Int32Array.of(9) })).toThrow(
      /batch\.lengths must be an Int32Array of batchSize = 2 values/,
    );
    expect(run({ lengths: Int32Array.of(9, 0) })).toThrow(
      /batch\.lengths\[1\] must be a length in \[1, seqLen = 9\]/,
    );
    const long = { batchSize: 1, seqLen: 17, inputIds: new Int32Array(17), labels: new Int32Array(17) };
    expect(run(long)).toThrow(/batch\.seqLen must be at most 16.*larger maxPositions/);
  });

  it('rejects trainable names the model does not have', () => {
    expect(run(ok, ['lm_head.weights'])).toThrow(
      /trainable parameter must be a parameter name of this model/,
    );
  });
});

describe('DeviceLlama.lossAndGradients accumulates', () => {
  it('adds into the buffers (two calls give twice one), and a batch with no label changes nothing', () => {
    const model = DeviceLlama.create(device, config, { seed: 8, dtype: 'float32' });
    const name = 'model.layers.2.mlp.up_proj.weight';
    const grad = device.zeros([96, 64], 'float32', 'gradients');
    try {
      const batch = smallBatch(config.vocabSize);
      const first = model.lossAndGradients(batch, [name], () => grad);
      const once = grad.read();
      const second = model.lossAndGradients(batch, [name], () => grad);
      expect(second.loss).toBe(first.loss);
      const twice = grad.read();
      once.forEach((g, i) => expect(twice[i]).toBeCloseTo(2 * g, 6));
      const unlabelled = { ...batch, labels: new Int32Array(batch.labels.length).fill(-100) };
      expect(model.lossAndGradients(unlabelled, [name], () => grad)).toEqual({
        loss: 0,
        tokens: 15,
        labelTokens: 0,
      });
      expect(grad.read()).toEqual(twice);
    } finally {
      grad.free();
      model.dispose();
    }
  });
});
