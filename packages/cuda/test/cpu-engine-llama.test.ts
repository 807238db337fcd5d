import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { LlamaConfig, NamedArray } from '@badam/core';
import { afterAll, describe, expect, it } from 'vitest';
import { Device, DeviceLlama, type DeviceTensor } from '../src/index.js';
import { randomArray } from './helpers.js';
import { layerNames, relativeErrors, smallBatch, smallLlamaConfig } from './llama-fixture.js';

// A DeviceLlama training step on the CPU engine against the same step on the CPU reference device (itself
// checked against tfjs in llama-training.test.ts): loss and every gradient, GQA with llama3 RoPE, padding,
// -100 labels, tied and untied heads, q/k/v biases, with and without gradient checkpointing.
const reference = Device.cpu();
const engine = Device.cpuEngine();
afterAll(() => {
  reference.emptyCache();
  engine.emptyCache();
});

/** Seeded weights with norms and biases away from 1 and 0, so that their gradients are checked for real. */
function weightsOf(config: LlamaConfig): NamedArray[] {
  const made = DeviceLlama.create(reference, config, { dtype: 'float32', seed: 3, initializerRange: 0.08 });
  const arrays = made.readWeights();
  made.dispose();
  return arrays.map((a, k) => {
    const base = a.name.endsWith('norm.weight') ? 1 : a.name.endsWith('.bias') ? 0 : undefined;
    if (base === undefined) return a;
    return { ...a, data: randomArray((a.data as Float32Array).length, 1000 + k, 0.3).map((x) => base + x) };
  });
}

function step(
  device: Device,
  options: { tied: boolean; qkvBias: boolean; dtype: 'float32' | 'bfloat16'; checkpointing: boolean },
) {
  const config = smallLlamaConfig(options);
  const arrays = weightsOf(config);
  const model = DeviceLlama.fromNamedArrays(device, config, arrays, {
    dtype: options.dtype,
    gradientCheckpointing: options.checkpointing,
  });
  // the middle layer, the final norm and the embedding (the head too when tied): backward through everything
  const trainable = [...layerNames(arrays, 1), 'model.norm.weight', 'model.embed_tokens.weight'];
  const grads = new Map<string, DeviceTensor>();
  const sizes = new Map(arrays.map((a) => [a.name, a.shape.reduce((x, y) => x * y, 1)]));
  for (const name of trainable) grads.set(name, device.zeros([sizes.get(name)!], 'float32'));
  const { loss } = model.lossAndGradients(smallBatch(config.vocabSize), trainable, (n) => grads.get(n)!);
  const read = new Map([...grads].map(([n, t]) => [n, t.read()]));
  for (const t of grads.values()) t.free();
  const evaluation = model.evaluate(smallBatch(config.vocabSize));
  model.dispose();
  return { loss, grads: read, evaluation };
}

describe(`DeviceLlama on the CPU engine (${engine.description.name}) against the reference device`, () => {
  for (const tied of [true, false])
    for (const dtype of ['float32', 'bfloat16'] as const)
      for (const checkpointing of [false, true]) {
        const options = { tied, qkvBias: !tied, dtype, checkpointing };
        it(`${tied ? 'tied' : 'untied with q/k/v biases'}, ${dtype}${checkpointing ? ', gradient checkpointing' : ''}: loss, gradients, evaluation`, () => {
          const want = step(reference, options);
          const got = step(engine, options);
          const tol = dtype === 'float32' ? 2e-5 : 2e-2;
          expect(Math.abs(got.loss / want.loss - 1)).toBeLessThan(dtype === 'float32' ? 1e-6 : 2e-3);
          for (const [name, g] of want.grads)
            expect(relativeErrors(got.grads.get(name)!, g).norm, name).toBeLessThan(tol);
          expect(got.evaluation.counted).toBe(want.evaluation.counted);
          expect(Math.abs(got.evaluation.loss / want.evaluation.loss - 1)).toBeLessThan(
            dtype === 'float32' ? 1e-6 : 2e-3,
          );
          expect(engine.memory().inUse, 'the step freed what it made').toBe(0);
        });
      }
});

it('gives the same bits on 1 thread as on 3 (every tile and reduction in a fixed order)', () => {
  // A bf16 step of a GQA Llama with partial tiles, in a fresh process per thread count (the pool is sized once).
  const dist = new URL('../dist/src/index.js', import.meta.url).href;
  const script = `
    import { createHash } from 'node:crypto';
    import { llamaConfigFromHf } from '@badam/core';
    const { Device, DeviceLlama } = await import(process.env.BADAM_CUDA_DIST);
    const device = Device.cpuEngine();
    const config = llamaConfigFromHf({ model_type: 'llama', vocab_size: 300, hidden_size: 96, intermediate_size: 200,
      num_hidden_layers: 2, num_attention_heads: 6, num_key_value_heads: 2, max_position_embeddings: 80 });
    const model = DeviceLlama.create(device, config, { dtype: 'bfloat16', seed: 1 });
    const n = 2 * 70;
    const inputIds = Int32Array.from({ length: n }, (_, i) => (i * 37) % 300);
    const batch = { batchSize: 2, seqLen: 70, inputIds, labels: inputIds, lengths: Int32Array.of(70, 41) };
    const names = model.parameters().map((p) => p.name).filter((name) => name.startsWith('model.layers.0.'));
    const grads = new Map(model.parameters().filter((p) => names.includes(p.name)).map((p) => [p.name, device.zeros(p.shape, 'float32')]));
    const { loss } = model.lossAndGradients(batch, [...names, 'model.embed_tokens.weight'].filter((x) => grads.has(x)), (k) => grads.get(k));
    const hash = createHash('sha256');
    for (const g of grads.values()) hash.update(g.readRaw());
    console.log('threads ' + device.description.multiprocessors + ': ' + loss + ' ' + hash.digest('hex'));
  `;
  const outputs = [1, 3].map((threads) => {
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf8',
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      // The built package by its URL, from the environment (an import by path would read as an undeclared dependency).
      env: { ...process.env, BADAM_THREADS: String(threads), BADAM_CUDA_DIST: dist },
    });
    expect(child.status, child.stderr).toBe(0);
    return child.stdout.trim();
  });
  expect(outputs[0]).toMatch(/^threads 1: \S+ [0-9a-f]{64}$/);
  expect(outputs[1]).toMatch(/^threads 3: /);
  expect(outputs[1]!.replace(/^threads 3: /, '')).toBe(outputs[0]!.replace(/^threads 1: /, ''));
});
