import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import '@tensorflow/tfjs';
import {
  BlockOptimizer,
  type DType,
  type NamedParameterInfo,
  ReferenceBackend,
  roundToBfloat16,
} from '@badam/core';
import { writeSafetensors } from '@badam/safetensors';
import { AdamW, TfjsBlockBackend, useTfjsBackend } from '@badam/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { CudaBlockBackend, CudaUnavailableError, Device, loadSafetensorsToDevice } from '../src/index.js';
import { maxRelativeError, randomArray } from './helpers.js';

// A small Llama-shaped parameter list: 3 layers (the blocks), an embedding and a head that stay frozen.
const SHAPES: Array<[string, number[]]> = [['model.embed_tokens.weight', [32, 16]]];
for (let i = 0; i < 3; i++) {
  SHAPES.push([`model.layers.${i}.self_attn.q_proj.weight`, [16, 16]]);
  SHAPES.push([`model.layers.${i}.mlp.down_proj.weight`, [16, 24]]);
  SHAPES.push([`model.layers.${i}.input_layernorm.weight`, [16]]);
}
SHAPES.push(['lm_head.weight', [32, 16]]);

const params = (dtype: DType): NamedParameterInfo[] =>
  SHAPES.map(([name, shape]) => ({ name, shape, dtype }));
// bf16-representable starting values, so the fp32 tfjs run starts from the same point.
const initial = new Map(
  SHAPES.map(([name, shape], i) => [
    name,
    randomArray(
      shape.reduce((a, b) => a * b, 1),
      1000 + i,
      0.5,
    ).map(roundToBfloat16),
  ]),
);
// The gradient supplied at (step, micro-batch) for a parameter: the same on every backend.
const gradient = (name: string, step: number, micro: number) =>
  randomArray(initial.get(name)!.length, step * 131 + micro * 17 + name.length * 7, 2);

const LR = 1e-2;
const ADAMW = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.05 };
const options = (namedParameters: NamedParameterInfo[]) => ({
  namedParameters,
  learningRate: LR,
  switchBlockEvery: 2,
  switchMode: 'descending' as const,
  verbose: 0 as const,
  gradientAccumulationSteps: 2,
});

interface Driver {
  trainable(): string[];
  add(name: string, values: Float32Array): void;
}

/** 8 optimizer steps of 2 micro-batches: every block twice, and lr decays as a schedule would set it. */
function drive(optimizer: { step(): unknown; lr: number }, driver: Driver) {
  for (let step = 1; step <= 8; step++) {
    optimizer.lr = LR / step;
    // core counts micro-batches: step() after each, the update happens on the second.
    for (let micro = 0; micro < 2; micro++) {
      for (const name of driver.trainable()) driver.add(name, gradient(name, step, micro));
      optimizer.step();
    }
  }
}

beforeAll(async () => {
  await useTfjsBackend('cpu');
});

describe('CudaBlockBackend holds BAdam semantics', () => {
  it('matches core ReferenceBackend (bf16 weights) and tfjs (fp32 weights) through the same schedule', () => {
    const device = Device.cpu();
    const cuda = new CudaBlockBackend(
      device,
      params('bfloat16').map((p) => ({ ...p, values: initial.get(p.name)! })),
      { clipGradNorm: 5 },
    );
    const cudaOptimizer = new BlockOptimizer({ ...options(params('bfloat16')), baseOptimizer: ADAMW }, cuda);
    const switches: number[] = [];
    drive(cudaOptimizer, {
      trainable: () => {
        switches.push(Number(/layers\.(\d)/.exec(cudaOptimizer.trainableNames[0]!)![1]));
        return cudaOptimizer.trainableNames;
      },
      add: (name, g) => cuda.accumulateGradient(name, g),
    });
    expect([...new Set(switches)]).toEqual([2, 1, 0]);

    // core's reference has no clipping: compare it on a run without, below; tfjs has the same clipping.
    const tfjsVariables = SHAPES.map(
      ([name, shape]) =>
        [name, tf.variable(tf.tensor(initial.get(name)!, shape), true, name)] as [string, tf.Variable],
    );
    const tfjs = new TfjsBlockBackend(tfjsVariables, { clipGradNorm: 5 });
    const tfjsOptimizer = new BlockOptimizer(
      {
        ...options(params('float32')),
        baseOptimizer: new AdamW({
          learningRate: LR,
          beta1: 0.9,
          beta2: 0.999,
          epsilon: 1e-8,
          weightDecay: 0.05,
        }),
      },
      tfjs,
    );
    drive(tfjsOptimizer, {
      trainable: () => tfjsOptimizer.trainableNames,
      add: (name, g) =>
        tfjs.addGradients(new Map([[name, tf.tensor(g, tfjsVariables.find(([n]) => n === name)![1].shape)]])),
    });
    for (const [name, variable] of tfjsVariables) {
      const expected = Float32Array.from(variable.dataSync(), roundToBfloat16);
      const got = cuda.weight(name);
      // bf16 tolerance: at most one bf16 step apart where fp32 arithmetic order tips a rounding.
      expect(maxRelativeError(got, expected, 1e-2), name).toBeLessThanOrEqual(2 ** -7);
    }
    // Frozen parameters never moved.
    expect(cuda.weight('model.embed_tokens.weight')).toEqual(initial.get('model.embed_tokens.weight'));
    expect(cuda.weight('lm_head.weight')).toEqual(initial.get('lm_head.weight'));
    cuda.dispose();
    for (const [, v] of tfjsVariables) v.dispose();
  });

  it('equals ReferenceBackend bit for bit on most weights, within one bf16 step on all', () => {
    const device = Device.cpu();
    const cuda = new CudaBlockBackend(
      device,
      params('bfloat16').map((p) => ({ ...p, values: initial.get(p.name)! })),
    );
    const reference = new ReferenceBackend(
      params('bfloat16').map((p) => ({ ...p, values: initial.get(p.name)! })),
    );
    const a = new BlockOptimizer({ ...options(params('bfloat16')), baseOptimizer: ADAMW }, cuda);
    const b = new BlockOptimizer({ ...options(params('bfloat16')), baseOptimizer: ADAMW }, reference);
    drive(a, { trainable: () => a.trainableNames, add: (n, g) => cuda.accumulateGradient(n, g) });
    drive(b, { trainable: () => b.trainableNames, add: (n, g) => reference.accumulateGradient(n, g) });
    let same = 0;
    let total = 0;
    for (const [name] of SHAPES) {
      const x = cuda.weight(name);
      const y = reference.weight(name);
      expect(maxRelativeError(x, y, 1e-2), name).toBeLessThanOrEqual(2 ** -7);
      for (let i = 0; i < x.length; i++) same += x[i] === y[i] ? 1 : 0;
      total += x.length;
    }
    expect(same / total).toBeGreaterThan(0.99);
  });

  it('allocates masters, gradients and Adam state for the active block only, and frees them on a switch', () => {
    const device = Device.cpu();
    const cuda = new CudaBlockBackend(
      device,
      params('bfloat16').map((p) => ({ ...p, values: initial.get(p.name)! })),
    );
    const weightBytes = SHAPES.reduce((n, [, s]) => n + 2 * s.reduce((a, b) => a * b, 1), 0);
    const layerElements = 16 * 16 + 16 * 24 + 16;
    expect(cuda.memory().byKind).toMatchObject({
      weights: weightBytes,
      masters: 0,
      gradients: 0,
      optimizerState: 0,
    });
    const optimizer = new BlockOptimizer(
      {
        ...options(params('bfloat16')),
        baseOptimizer: ADAMW,
        switchBlockEvery: 1,
        gradientAccumulationSteps: 1,
      },
      cuda,
    );
    const seen: Array<Record<string, number | undefined>> = [];
    for (let step = 1; step <= 3; step++) {
      for (const name of optimizer.trainableNames) cuda.accumulateGradient(name, gradient(name, step, 0));
      seen.push({ ...cuda.memory().byKind });
      optimizer.step();
    }
    for (const kinds of seen) {
      expect(kinds).toMatchObject({
        weights: weightBytes,
        masters: 4 * layerElements,
        gradients: 4 * layerElements,
        optimizerState: 8 * layerElements,
      });
    }
    // After the last switch a new block is active; dispose frees everything.
    cuda.dispose();
    expect(device.memory().inUse).toBe(0);
    expect(device.memory().deviceAllocations).toBeLessThan(SHAPES.length + 3 * 4 + 4); // the later blocks reused pooled memory
  });

  it('checkpoints the active block: optimizerTensors round-trip into a fresh backend', () => {
    const device = Device.cpu();
    const make = () =>
      new CudaBlockBackend(
        device,
        params('bfloat16').map((p) => ({ ...p, values: initial.get(p.name)! })),
      );
    const first = make();
    const optimizer = new BlockOptimizer(
      { ...options(params('bfloat16')), baseOptimizer: ADAMW, gradientAccumulationSteps: 1 },
      first,
    );
    for (const name of optimizer.trainableNames) first.accumulateGradient(name, gradient(name, 1, 0));
    optimizer.step();
    const saved = first.optimizerTensors();
    expect(saved.map((t) => t.name).filter((n) => n.endsWith('.master'))).toHaveLength(3);
    const second = make();
    second.activateBlock({
      blockIndex: 2,
      prefixes: ['model.layers.2.'],
      parameters: optimizer.trainableNames.map((name) => ({
        ...params('bfloat16').find((p) => p.name === name)!,
        weightDecay: true,
        activeModule: false,
      })),
      baseOptimizer: ADAMW,
    });
    second.loadOptimizerTensors(saved);
    expect(second.optimizerTensors()).toEqual(saved);
  });

  it('rejects gradients for frozen parameters and of the wrong size', () => {
    const cuda = new CudaBlockBackend(
      Device.cpu(),
      params('bfloat16').map((p) => ({ ...p, values: initial.get(p.name)! })),
    );
    const optimizer = new BlockOptimizer({ ...options(params('bfloat16')), baseOptimizer: ADAMW }, cuda);
    expect(optimizer.trainableNames[0]).toContain('layers.2');
    expect(() => cuda.accumulateGradient('lm_head.weight', new Float32Array(512))).toThrow(
      'is not trainable now',
    );
    expect(() => cuda.accumulateGradient(optimizer.trainableNames[0]!, new Float32Array(3))).toThrow(
      '3 values',
    );
    expect(
      () =>
        new CudaBlockBackend(
          Device.cpu(),
          params('bfloat16').map((p) => ({ ...p, values: initial.get(p.name)! })),
          { clipGradNorm: 0 },
        ),
    ).toThrow('clipGradNorm');
  });
});

describe('safetensors straight into device memory', () => {
  it('loads bf16 tensors as stored bits, no fp32 detour', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'badam-cuda-'));
    const bits = Uint16Array.from({ length: 48 }, (_, i) => 0x3f80 + i);
    const path = join(dir, 'model.safetensors');
    await writeSafetensors(path, [
      { name: 'a', dtype: 'bfloat16', shape: [6, 8], data: bits },
      { name: 'b', dtype: 'float32', shape: [3], data: Float32Array.of(1, 2, 3) },
    ]);
    const device = Device.cpu();
    const tensors = await loadSafetensorsToDevice(device, path);
    expect(tensors.get('a')!.dtype).toBe('bfloat16');
    expect(tensors.get('a')!.readRaw()).toEqual(bits);
    expect(tensors.get('b')!.read()).toEqual(Float32Array.of(1, 2, 3));
    expect(device.memory().byKind.weights).toBe(96 + 12);
    await rm(dir, { recursive: true, force: true });
  });
});

describe.skipIf(Device.cudaStatus().devices > 0)('without a GPU', () => {
  it('Device.cuda() says what is missing', () => {
    expect(() => Device.cuda()).toThrow(CudaUnavailableError);
    expect(() => Device.cuda()).toThrow(
      /cannot use a GPU here: .*(built without CUDA|no usable CUDA device|no CUDA device)/,
    );
  });
});
