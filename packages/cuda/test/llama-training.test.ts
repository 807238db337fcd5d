import '@tensorflow/tfjs';
import { type NamedArray, roundToBfloat16 } from '@badam/core';
import { useTfjsBackend } from '@badam/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Device, DeviceLlama, type DeviceLlamaOptions, type DeviceTensor } from '../src/index.js';
import {
  assignWeights,
  layerNames,
  referenceGradients,
  referenceModel,
  relativeErrors,
  smallBatch,
  smallLlamaConfig,
} from './llama-fixture.js';

let device: Device;
beforeAll(async () => {
  await useTfjsBackend('cpu');
  device = Device.cpu();
});
afterAll(() => tf.disposeVariables());

/** One step of DeviceLlama: loss and the gradients of `trainable`, and the names it asked a buffer for. */
function deviceStep(model: DeviceLlama, trainable: readonly string[]) {
  const batch = smallBatch(model.config.vocabSize);
  const buffers = new Map<string, DeviceTensor>();
  const asked: string[] = [];
  for (const p of model.parameters()) {
    if (trainable.includes(p.name)) buffers.set(p.name, device.zeros(p.shape, 'float32', 'gradients'));
  }
  const result = model.lossAndGradients(batch, trainable, (name) => {
    asked.push(name);
    return buffers.get(name)!;
  });
  const grads = new Map([...buffers].map(([n, t]) => [n, t.read()]));
  for (const t of buffers.values()) t.free();
  return { ...result, grads, asked };
}

for (const tied of [false, true]) {
  describe(`DeviceLlama (fp32, CPU device) against @badam/models' LlamaForCausalLM, ${tied ? 'tied' : 'untied'} head`, () => {
    const config = smallLlamaConfig({ tied });
    const { model: reference, arrays } = referenceModel(config, 7);
    const blocks: Array<[string, string[]]> = [
      ['the middle layer', layerNames(arrays, 1)],
      [
        'the top layer, final norm and head',
        [...layerNames(arrays, 2), 'model.norm.weight', ...(tied ? [] : ['lm_head.weight'])],
      ],
      ['the embedding', ['model.embed_tokens.weight']],
    ];
    for (const checkpointing of [false, true]) {
      for (const [what, trainable] of blocks) {
        it(`${what}${checkpointing ? ', gradient checkpointing' : ''}: loss and every gradient within 1e-4`, () => {
          const model = DeviceLlama.fromNamedArrays(device, config, arrays, {
            dtype: 'float32',
            gradientCheckpointing: checkpointing,
            lossChunkTokens: 5, // 9 labelled rows: chunks of 5 and 4
          });
          try {
            const batch = smallBatch(config.vocabSize);
            const expected = referenceGradients(reference, batch, trainable);
            const actual = deviceStep(model, trainable);
            expect(actual.labelTokens).toBe(9);
            expect(actual.tokens).toBe(15);
            expect(Math.abs(actual.loss - expected.loss) / expected.loss).toBeLessThan(1e-5);
            expect(actual.asked.sort()).toEqual([...trainable].sort());
            for (const name of trainable) {
              const e = relativeErrors(actual.grads.get(name)!, expected.grads.get(name)!);
              if (process.env.LLAMA_ERRORS)
                console.log(
                  `${what} ${checkpointing} ${name} ${e.norm.toExponential(2)} ${e.maxAbs.toExponential(2)} loss ${actual.loss} ${expected.loss}`,
                );
              expect(e.norm, `${name} relative error of the norm`).toBeLessThan(1e-4);
              expect(e.maxAbs, `${name} max-abs relative error`).toBeLessThan(1e-4);
            }
          } finally {
            model.dispose();
          }
        });
      }
    }
  });
}

describe('DeviceLlama with q/k/v biases (Qwen2-style, tied head)', () => {
  const config = smallLlamaConfig({ tied: true, qkvBias: true });
  const { model: reference, arrays } = referenceModel(config, 11);
  it('the middle layer with its biases: every gradient within 1e-4', () => {
    const trainable = layerNames(arrays, 1);
    expect(trainable).toContain('model.layers.1.self_attn.q_proj.bias');
    const model = DeviceLlama.fromNamedArrays(device, config, arrays, { dtype: 'float32' });
    try {
      const expected = referenceGradients(reference, smallBatch(config.vocabSize), trainable);
      const actual = deviceStep(model, trainable);
      expect(Math.abs(actual.loss - expected.loss) / expected.loss).toBeLessThan(1e-5);
      for (const name of trainable) {
        const e = relativeErrors(actual.grads.get(name)!, expected.grads.get(name)!);
        expect(e.norm, name).toBeLessThan(1e-4);
        expect(e.maxAbs, name).toBeLessThan(1e-4);
      }
    } finally {
      model.dispose();
    }
  });
});

describe('DeviceLlama in bf16 weights and activations', () => {
  const config = smallLlamaConfig({ tied: false });
  const { model: reference, arrays } = referenceModel(config, 7);
  // The reference computes in fp32 on the same bf16-rounded weights: what differs is activation rounding.
  const rounded: NamedArray[] = arrays.map((a) => ({
    ...a,
    data: (a.data as Float32Array).map(roundToBfloat16),
  }));
  beforeAll(() => assignWeights(reference, rounded));
  const options: DeviceLlamaOptions = { dtype: 'bfloat16' };
  for (const [what, trainable] of [
    ['the middle layer', layerNames(arrays, 1)],
    ['the top layer and head', [...layerNames(arrays, 2), 'model.norm.weight', 'lm_head.weight']],
    ['the embedding', ['model.embed_tokens.weight']],
  ] as const) {
    it(`${what}: loss within 1e-2, gradient norms within 3e-2 relative`, () => {
      const model = DeviceLlama.fromNamedArrays(device, config, rounded, options);
      try {
        const expected = referenceGradients(reference, smallBatch(config.vocabSize), trainable);
        const actual = deviceStep(model, trainable);
        expect(Math.abs(actual.loss - expected.loss) / expected.loss).toBeLessThan(1e-2);
        for (const name of trainable) {
          const e = relativeErrors(actual.grads.get(name)!, expected.grads.get(name)!);
          if (process.env.LLAMA_ERRORS)
            console.log(
              `bf16 ${what} ${name} ${e.norm.toExponential(2)} ${e.maxAbs.toExponential(2)} loss ${actual.loss} ${expected.loss}`,
            );
          expect(e.norm, name).toBeLessThan(3e-2);
        }
      } finally {
        model.dispose();
      }
    });
  }
});

// The GPU's kernels against the C++ references, through a whole step: on a machine with a GPU only (the CPU
// device's step is checked against @badam/models' tfjs Llama above).
describe.skipIf(Device.cudaStatus().devices === 0)(
  'one step on the CUDA device and on the CPU device agree',
  () => {
    const config = smallLlamaConfig({ tied: true, qkvBias: true });
    const { arrays } = referenceModel(config, 13);
    const trainable = arrays.map((a) => a.name); // everything: every op forward and backward
    const stepOn = (target: Device, dtype: 'float32' | 'bfloat16') => {
      const model = DeviceLlama.fromNamedArrays(target, config, arrays, { dtype, lossChunkTokens: 4 });
      try {
        const batch = smallBatch(config.vocabSize);
        const buffers = new Map(
          trainable.map((n) => [
            n,
            target.zeros(arrays.find((a) => a.name === n)!.shape, 'float32', 'gradients'),
          ]),
        );
        const { loss } = model.lossAndGradients(batch, trainable, (n) => buffers.get(n)!);
        const grads = new Map([...buffers].map(([n, t]) => [n, t.read()]));
        for (const t of buffers.values()) t.free();
        return { loss, grads };
      } finally {
        model.dispose();
      }
    };
    for (const [dtype, tolerance] of [
      ['float32', 1e-5],
      ['bfloat16', 2e-2],
    ] as const) {
      it(`${dtype}: loss and every gradient`, () => {
        const gpu = stepOn(Device.cuda(), dtype);
        const cpu = stepOn(device, dtype);
        expect(Math.abs(gpu.loss - cpu.loss) / cpu.loss).toBeLessThan(tolerance / 10);
        for (const name of trainable) {
          const e = relativeErrors(gpu.grads.get(name)!, cpu.grads.get(name)!);
          expect(e.norm, name).toBeLessThan(tolerance);
        }
      });
    }
  },
);

describe('DeviceLlama: gradient checkpointing and fp16', () => {
  const config = smallLlamaConfig({ tied: false });
  const { model: reference, arrays } = referenceModel(config, 17);
  const trainable = [...layerNames(arrays, 0), 'model.embed_tokens.weight'];

  it('gradient checkpointing gives the very same loss and gradients (bf16, every layer recomputed)', () => {
    const plain = DeviceLlama.fromNamedArrays(device, config, arrays, { dtype: 'bfloat16' });
    const checkpointed = DeviceLlama.fromNamedArrays(device, config, arrays, {
      dtype: 'bfloat16',
      gradientCheckpointing: true,
    });
    try {
      const a = deviceStep(plain, trainable);
      const b = deviceStep(checkpointed, trainable);
      expect(b.loss).toBe(a.loss);
      for (const name of trainable) expect(b.grads.get(name), name).toEqual(a.grads.get(name));
    } finally {
      plain.dispose();
      checkpointed.dispose();
    }
  });

  it('fp16 weights and activations: loss within 1e-3, gradient norms within 1e-2 relative', () => {
    const model = DeviceLlama.fromNamedArrays(device, config, arrays, { dtype: 'float16' });
    try {
      expect(model.parameters()[0]!.dtype).toBe('float16');
      const expected = referenceGradients(reference, smallBatch(config.vocabSize), trainable);
      const actual = deviceStep(model, trainable);
      expect(Math.abs(actual.loss - expected.loss) / expected.loss).toBeLessThan(1e-3);
      for (const name of trainable) {
        const e = relativeErrors(actual.grads.get(name)!, expected.grads.get(name)!);
        if (process.env.LLAMA_ERRORS) console.log(`fp16 ${name} ${e.norm.toExponential(2)}`);
        expect(e.norm, name).toBeLessThan(1e-2);
      }
    } finally {
      model.dispose();
    }
  });
});

describe('gradient buffers in the weight dtype', () => {
  const config = smallLlamaConfig({ tied: false });
  const { arrays } = referenceModel(config, 19);
  it("bf16 matrix gradients are the fp32 ones rounded once (one GEMM each); norms' stay fp32", () => {
    const model = DeviceLlama.fromNamedArrays(device, config, arrays, { dtype: 'bfloat16' });
    try {
      const trainable = layerNames(arrays, 1);
      const dtypes = new Map(model.parameters().map((p) => [p.name, p.gradientDtype]));
      expect(dtypes.get('model.layers.1.mlp.down_proj.weight')).toBe('bfloat16');
      expect(dtypes.get('model.layers.1.input_layernorm.weight')).toBe('float32');
      expect(dtypes.get('model.embed_tokens.weight')).toBe('float32');
      const step = (gradientDtype: (name: string) => 'float32' | 'bfloat16') => {
        const buffers = new Map(
          trainable.map((n) => [
            n,
            device.zeros(arrays.find((a) => a.name === n)!.shape, gradientDtype(n), 'gradients'),
          ]),
        );
        model.lossAndGradients(smallBatch(config.vocabSize), trainable, (n) => buffers.get(n)!);
        const grads = new Map([...buffers].map(([n, t]) => [n, t.read()]));
        for (const t of buffers.values()) t.free();
        return grads;
      };
      const fp32 = step(() => 'float32');
      const native = step((n) => dtypes.get(n) as 'float32' | 'bfloat16');
      for (const name of trainable) {
        const want = dtypes.get(name) === 'bfloat16' ? fp32.get(name)!.map(roundToBfloat16) : fp32.get(name)!;
        expect(native.get(name), name).toEqual(want);
      }
    } finally {
      model.dispose();
    }
  });
});
