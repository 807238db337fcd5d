import { arrayDataSource, type FineTuningMethod, planTraining, Trainer, UsageError } from '@badam/core';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type CudaTrainingModel,
  createCudaTrainerBackend,
  cudaBackendModel,
  cudaDeviceLabel,
  cudaMissingFor,
  Device,
  type DeviceTensor,
  openDevice,
} from '../src/index.js';
import { randomArray } from './helpers.js';

const H = 4;
const NAMES = ['model.layers.0.proj.weight', 'model.layers.1.proj.weight'] as const;
interface Batch {
  readonly x: Float32Array; // [n, H]
  readonly t: Float32Array; // [n, H]
}

/** c[n, m] = a[n, k] b[k, m]; `transA`: a stored [k, n]; `transB`: b stored [m, k]. */
function matmul(
  a: Float32Array,
  b: Float32Array,
  n: number,
  k: number,
  m: number,
  transA = false,
  transB = false,
) {
  const c = new Float32Array(n * m);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < m; j++) {
      let s = 0;
      for (let l = 0; l < k; l++)
        s += (transA ? a[l * n + i]! : a[i * k + l]!) * (transB ? b[j * k + l]! : b[l * m + j]!);
      c[i * m + j] = s;
    }
  return c;
}

/** y = (x W0) W1 with a mean squared error, its weights on the device, forward and backward on the host. */
function tinyLinear(device: Device): CudaTrainingModel<Batch> & { weights: DeviceTensor[] } {
  const weights = NAMES.map((_, i) =>
    device.tensor(randomArray(H * H, 11 + i, 0.5), [H, H], 'float32', 'weights'),
  );
  const forward = (batch: Batch) => {
    const n = batch.x.length / H;
    const [w0, w1] = weights.map((w) => w.read()) as [Float32Array, Float32Array];
    const h = matmul(batch.x, w0, n, H, H);
    const y = matmul(h, w1, n, H, H);
    const dy = y.map((v, i) => (2 * (v - batch.t[i]!)) / (n * H));
    const loss = y.reduce((s, v, i) => s + (v - batch.t[i]!) ** 2, 0) / (n * H);
    return { n, w1, h, dy, loss };
  };
  return {
    device,
    weights,
    parameters: () =>
      NAMES.map((name, i) => ({ name, shape: [H, H], dtype: 'float32' as const, values: weights[i]! })),
    task: (gradientOf) => ({
      lossAndGradients(batch, trainable) {
        const { n, w1, h, dy, loss } = forward(batch);
        const grads: Record<string, Float32Array> = {
          [NAMES[1]]: matmul(h, dy, H, n, H, true),
          [NAMES[0]]: matmul(batch.x, matmul(dy, w1, n, H, H, false, true), H, n, H, true),
        };
        // As a device model does: add into the backend's accumulators, return no gradients.
        for (const name of trainable) {
          const staged = device.tensor(grads[name]!, [H, H], 'float32', 'workspace');
          device.accumulate(gradientOf(name), staged);
          staged.free();
        }
        return { loss, tokens: n, gradients: new Map() };
      },
      evaluate: (batch) => ({ loss: forward(batch).loss, weight: batch.x.length / H }),
    }),
  };
}

const data = () =>
  arrayDataSource(
    Array.from({ length: 6 }, (_, i) => i),
    {
      batchSize: 1,
      collate: ([i]) => {
        const x = randomArray(2 * H, 100 + i!);
        return { x, t: x.map((v, j) => Math.sin(v + j)) };
      },
    },
  );

const planFor = (method: FineTuningMethod) =>
  planTraining({
    settings: { method, learningRate: 0.05, switchBlockEvery: 3 },
    parameters: NAMES.map((name) => ({ name, shape: [H, H], dtype: 'float32' as const })),
    logFn: () => {},
  });

describe('createCudaTrainerBackend on the CPU device', () => {
  const device = openDevice('cpu');
  afterAll(() => {
    expect(device.memory().inUse, 'everything freed').toBe(0);
  });

  for (const method of ['block', 'full'] as const) {
    it(`${method}: trains the plan's partition, holds one group's state, reports peaks by kind, frees it`, async () => {
      const model = tinyLinear(device);
      const before = model.weights.map((w) => w.read());
      const backend = await createCudaTrainerBackend(planFor(method), model);
      expect(backend.trainer.description).toBe(
        method === 'block'
          ? 'BAdam on cuda cpu reference: 2 blocks, switch every 3 steps (ascending), base AdamW'
          : 'full Adam on cuda cpu reference: AdamW over 2 trainable tensors',
      );
      const changedAfter = async (steps: number) => {
        await new Trainer<Batch>({ backend: backend.trainer, trainData: data(), maxSteps: steps }).train();
        return model.weights.map((w, i) => w.read().some((v, j) => v !== before[i]![j]));
      };
      // BAdam: K = 3 steps on layer 0 only; full Adam: both at once.
      expect(await changedAfter(3)).toEqual(method === 'block' ? [true, false] : [true, true]);
      const groups = method === 'block' ? 1 : 2;
      const peaks = backend.peakMemoryByKind!();
      expect(peaks).toMatchObject({
        weights: 2 * 64,
        masters: 0,
        gradients: groups * 64,
        optimizerState: groups * 128,
      });
      expect(peaks.activations).toBeGreaterThan(0);
      expect(backend.peakMemoryBytes()).toBeGreaterThanOrEqual(2 * 64 + groups * 192);
      expect(backend.nonFiniteWeights()).toEqual([]);
      backend.dispose();
      expect(device.memory().byKind).toMatchObject({ gradients: 0, optimizerState: 0, weights: 2 * 64 });
      for (const w of model.weights) w.free();
    });
  }

  it('refuses the plans it cannot run yet (LoRA, the ratio), saying what runs instead, from one table', async () => {
    const model = tinyLinear(device);
    for (const method of ['lora', 'sparse'] as const) {
      const plan = planTraining({
        settings: { method, learningRate: 0.05 },
        parameters: [
          ...model.parameters(),
          ...(method === 'lora'
            ? [{ name: 'model.layers.0.proj.lora_A.weight', shape: [2, H], dtype: 'float32' as const }]
            : []),
        ],
        logFn: () => {},
      });
      const error = await createCudaTrainerBackend(plan, model).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(UsageError);
      expect((error as Error).message).toBe(
        `${plan.label} (${method}) does not run on @badam/cuda yet: it has no ${cudaMissingFor(method)}; train block or full on @badam/cuda, or ${method} on @badam/tfjs (--backend tfjs)`,
      );
    }
    expect([cudaMissingFor('block'), cudaMissingFor('full')]).toEqual([undefined, undefined]);
    // A plan for other parameters is refused before anything is allocated.
    const other = planTraining({
      settings: { method: 'full', learningRate: 0.05 },
      parameters: [{ name: 'model.layers.0.proj.weight', shape: [H, 2], dtype: 'float32' }],
      logFn: () => {},
    });
    await expect(createCudaTrainerBackend(other, model)).rejects.toThrow(/parameter 0 of the model must be/);
    expect(device.memory().byKind.gradients).toBe(0);
    for (const w of model.weights) w.free();
  });

  it('openDevice: one device per choice and process, labelled; cudaBackendModel binds the factory', async () => {
    expect(openDevice('cpu')).toBe(device);
    expect(cudaDeviceLabel(device)).toBe('cuda cpu reference');
    if (Device.cudaStatus().devices === 0) {
      expect(() => openDevice(0)).toThrow(
        /^--backend cuda: @badam\/cuda cannot use a GPU here: .*\. Use --backend cpu for the CPU engine .*, or --backend tfjs$/,
      );
    }
    const model = tinyLinear(device);
    const bound = cudaBackendModel(model);
    expect(bound.parameters()).toEqual(NAMES.map((name) => ({ name, shape: [H, H], dtype: 'float32' })));
    const backend = await bound.createTrainerBackend(planFor('full'));
    backend.dispose();
    for (const w of model.weights) w.free();
  });
});
