import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import '@tensorflow/tfjs';
import {
  type BlockBackend,
  BlockOptimizer,
  BlockTrainer,
  type CheckpointableBlockBackend,
  type DType,
  type NamedParameterInfo,
  type OptimizerDescription,
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
const ADAMW = { type: 'adamw' as const, betas: [0.9, 0.999] as const, epsilon: 1e-8, weightDecay: 0.05 };
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
  it("clips exactly as the reference and tfjs backends: core's clip coefficient, the same norms, the same weights", () => {
    const CLIP = 5;
    // fp32 weights everywhere, so the three differ only by fp32 arithmetic order.
    const start = (name: string) => initial.get(name)!;
    const run = (
      backend: BlockBackend<never> & { weight(name: string): Float32Array },
      add: (name: string, g: Float32Array) => void,
      clipGradNorm: number | undefined,
      baseOptimizer: unknown,
    ) => {
      const optimizer = new BlockOptimizer(
        {
          ...options(params('float32')),
          baseOptimizer: baseOptimizer as never,
          ...(clipGradNorm !== undefined ? { clipGradNorm } : {}),
        },
        backend,
      );
      const norms: number[] = [];
      const blocks: number[] = [];
      for (let step = 1; step <= 8; step++) {
        optimizer.lr = LR / step;
        for (let micro = 0; micro < 2; micro++) {
          for (const name of optimizer.trainableNames) add(name, gradient(name, step, micro));
          const outcome = optimizer.step();
          if (outcome.applied) {
            norms.push(outcome.gradNorm ?? Number.NaN);
            blocks.push(outcome.updatedBlock);
          }
        }
      }
      return { norms, blocks, weight: (name: string) => backend.weight(name) };
    };

    const cudaBackend = new CudaBlockBackend(
      Device.cpu(),
      params('float32').map((p) => ({ ...p, values: start(p.name) })),
    );
    const cuda = run(cudaBackend as never, (n, g) => cudaBackend.accumulateGradient(n, g), CLIP, ADAMW);

    const referenceBackend = new ReferenceBackend(
      params('float32').map((p) => ({ ...p, values: start(p.name) })),
    );
    const reference = run(
      referenceBackend as never,
      (n, g) => referenceBackend.accumulateGradient(n, g),
      CLIP,
      ADAMW,
    );

    const tfjsVariables = SHAPES.map(
      ([name, shape]) =>
        [name, tf.variable(tf.tensor(start(name), shape), true, name)] as [string, tf.Variable],
    );
    const shapeOf = new Map(SHAPES);
    const tfjsBackend = new TfjsBlockBackend(tfjsVariables);
    const tfjsWeights = {
      weight: (n: string) => Float32Array.from(tfjsVariables.find(([v]) => v === n)![1].dataSync()),
    };
    const tfjsRun = run(
      Object.assign(tfjsBackend, tfjsWeights) as never,
      (n, g) => tfjsBackend.accumulateGradients(new Map([[n, tf.tensor(g, shapeOf.get(n)!)]])),
      CLIP,
      ADAMW,
    );

    // Clipping was active: every update's mean-gradient norm is above the bound...
    expect(reference.norms).toHaveLength(8);
    for (const norm of reference.norms) expect(norm).toBeGreaterThan(CLIP);
    expect(reference.blocks).toEqual([2, 2, 1, 1, 0, 0, 2, 2]);
    // ...and all three backends report the same norms and reach the same weights.
    for (const other of [cuda, tfjsRun]) {
      expect(other.blocks).toEqual(reference.blocks);
      expect(maxRelativeError(other.norms, reference.norms)).toBeLessThan(1e-6);
      for (const [name] of SHAPES) {
        expect(maxRelativeError(other.weight(name), reference.weight(name), 1e-3), name).toBeLessThan(5e-5);
      }
    }
    // Without clipping the run ends elsewhere, 20x beyond the tolerance above: the comparison is sensitive to
    // it (Adam undoes a constant gradient scale, so only the coefficient's change from step to step shows).
    const unclippedBackend = new ReferenceBackend(
      params('float32').map((p) => ({ ...p, values: start(p.name) })),
    );
    const unclipped = run(
      unclippedBackend as never,
      (n, g) => unclippedBackend.accumulateGradient(n, g),
      undefined,
      ADAMW,
    );
    const name = 'model.layers.2.mlp.down_proj.weight';
    expect(maxRelativeError(unclipped.weight(name), reference.weight(name), 1e-3)).toBeGreaterThan(1e-3);
    cudaBackend.dispose();
    for (const [, v] of tfjsVariables) v.dispose();
  });

  it('bf16 weights: the same clipped schedule as tfjs in fp32, within one bf16 step', () => {
    const device = Device.cpu();
    const cuda = new CudaBlockBackend(
      device,
      params('bfloat16').map((p) => ({ ...p, values: initial.get(p.name)! })),
    );
    const cudaOptimizer = new BlockOptimizer(
      { ...options(params('bfloat16')), baseOptimizer: ADAMW, clipGradNorm: 5 },
      cuda,
    );
    const switches: number[] = [];
    drive(cudaOptimizer, {
      trainable: () => {
        switches.push(Number(/layers\.(\d)/.exec(cudaOptimizer.trainableNames[0]!)![1]));
        return cudaOptimizer.trainableNames;
      },
      add: (name, g) => cuda.accumulateGradient(name, g),
    });
    expect([...new Set(switches)]).toEqual([2, 1, 0]);

    const tfjsVariables = SHAPES.map(
      ([name, shape]) =>
        [name, tf.variable(tf.tensor(initial.get(name)!, shape), true, name)] as [string, tf.Variable],
    );
    const tfjs = new TfjsBlockBackend(tfjsVariables);
    const tfjsOptimizer = new BlockOptimizer(
      {
        ...options(params('float32')),
        clipGradNorm: 5,
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
        tfjs.accumulateGradients(
          new Map([[name, tf.tensor(g, tfjsVariables.find(([n]) => n === name)![1].shape)]]),
        ),
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
        gradients: 4 * layerElements, // every parameter was given a gradient (fp32: none asked for less)
        optimizerState: 8 * layerElements,
      });
    }
    expect(cuda.memory().byKind!.gradients).toBe(0); // freed by the update
    // After the last switch a new block is active; dispose frees everything.
    cuda.dispose();
    expect(device.memory().inUse).toBe(0);
    expect(device.memory().deviceAllocations).toBeLessThan(SHAPES.length + 3 * 4 + 4); // the later blocks reused pooled memory
  });

  it('a gradient exists from its first request to the update, in the dtype its parameter asks for', () => {
    const device = Device.cpu();
    const cuda = new CudaBlockBackend(
      device,
      params('bfloat16').map((p) => ({
        ...p,
        values: initial.get(p.name)!,
        gradientDtype: p.shape.length === 2 ? ('bfloat16' as const) : ('float32' as const),
      })),
    );
    const optimizer = new BlockOptimizer(
      {
        ...options(params('bfloat16')),
        baseOptimizer: ADAMW,
        switchBlockEvery: 2,
        gradientAccumulationSteps: 1,
      },
      cuda,
    );
    const [matrix, vector] = [
      optimizer.trainableNames.find((n) => !n.includes('norm'))!,
      optimizer.trainableNames.find((n) => n.includes('norm'))!,
    ];
    expect(cuda.memory().byKind!.gradients).toBe(0); // activated: masters and moments, no gradient yet
    const numel = (name: string) => SHAPES.find(([n]) => n === name)![1].reduce((a, b) => a * b, 1);
    cuda.accumulateGradient(matrix, gradient(matrix, 1, 0));
    expect(cuda.gradientOf(matrix).dtype).toBe('bfloat16');
    expect(cuda.memory().byKind!.gradients).toBe(2 * numel(matrix));
    cuda.accumulateGradient(vector, gradient(vector, 1, 0));
    expect(cuda.gradientOf(vector).dtype).toBe('float32');
    expect(cuda.memory().byKind!.gradients).toBe(2 * numel(matrix) + 4 * numel(vector));
    const before = new Map(optimizer.trainableNames.map((n) => [n, cuda.weight(n)]));
    optimizer.step(); // the parameters no gradient reached still step (a zero gradient), then all are freed
    expect(cuda.memory().byKind!.gradients).toBe(0);
    expect(cuda.weight(matrix)).not.toEqual(before.get(matrix));
    cuda.dispose();
    expect(device.memory().inUse).toBe(0);
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
    const saved = first.exportOptimizerTensors();
    expect(saved.map((t) => t.name).filter((n) => n.endsWith('.master'))).toHaveLength(3);
    expect(saved.map((t) => t.name).slice(0, 4)).toEqual([
      'model.layers.2.self_attn.q_proj.weight.exp_avg',
      'model.layers.2.self_attn.q_proj.weight.exp_avg_sq',
      'model.layers.2.self_attn.q_proj.weight.step',
      'model.layers.2.self_attn.q_proj.weight.master',
    ]);
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
    second.importOptimizerTensors(saved, 1);
    expect(second.exportOptimizerTensors()).toEqual(saved);
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
          { clipGradNorm: 1 } as never,
        ),
    ).toThrow("CudaBlockBackend clipGradNorm must be absent: clipping is the BlockOptimizer's option now");
  });
});

describe("a checkpoint moves between backends: core's BlockTrainer on the CPU device and on the reference", () => {
  it('cuda -> reference: restored to the bit, then both continue alike', async () => {
    type Batch = { step: number };
    // A task whose gradients depend on the batch only: the same micro-batches reach both backends.
    const task = {
      lossAndGradients: (batch: Batch, trainable: readonly string[]) => ({
        loss: 1 / batch.step,
        tokens: 1,
        gradients: new Map(trainable.map((n) => [n, gradient(n, batch.step, 0)])),
      }),
      evaluate: () => ({ loss: 0, weight: 1 }),
    };
    const make = (backend: CheckpointableBlockBackend<OptimizerDescription, Float32Array>) =>
      new BlockTrainer<Batch, OptimizerDescription, Float32Array>(
        new BlockOptimizer(
          {
            ...options(params('bfloat16')),
            gradientAccumulationSteps: 1,
            baseOptimizer: ADAMW,
            clipGradNorm: 5,
          },
          backend,
        ),
        task,
      );
    const values = (p: NamedParameterInfo) => ({ ...p, values: initial.get(p.name)! });
    const onCuda = make(new CudaBlockBackend(Device.cpu(), params('bfloat16').map(values)));
    const onReference = make(new ReferenceBackend(params('bfloat16').map(values)));
    const steps = async (trainer: ReturnType<typeof make>, from: number, to: number) => {
      for (let step = from; step <= to; step++) {
        await trainer.forwardBackward({ step });
        trainer.step();
      }
    };
    await steps(onCuda, 1, 3); // block 2 twice, block 1 once: mid-block, moments and masters in flight
    const saved = structuredClone(await onCuda.snapshot());
    expect(saved.optimizer.tensors.map((t) => t.name)).toContain(
      'model.layers.1.mlp.down_proj.weight.exp_avg_sq',
    );
    await onReference.restore(saved);
    expect(await onReference.snapshot()).toEqual(saved);
    await steps(onCuda, 4, 8);
    await steps(onReference, 4, 8);
    const cudaWeights = await onCuda.snapshot();
    const referenceWeights = await onReference.snapshot();
    for (const [i, w] of cudaWeights.weights.entries()) {
      expect(
        maxRelativeError(w.data as Float32Array, referenceWeights.weights[i]!.data as Float32Array, 1e-2),
        w.name,
      ).toBeLessThanOrEqual(2 ** -7);
    }
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
