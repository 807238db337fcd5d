import { arrayDataSource, type FineTuningMethod, planTraining, Trainer } from '@badam/core';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  createTfjsTrainerBackend,
  type NamedVariable,
  parameterInfoOf,
  tfjsBackendModel,
} from '../src/index.js';
import { onBackend } from './fixtures/backends.js';
import { createTinyLlama, randomTokens, snapshot } from './fixtures/tiny-llama.js';

const CONFIG = { vocab: 16, hidden: 8, intermediate: 12, layers: 3, heads: 2 };
type Batch = tf.Tensor2D;
// Made once on the cpu backend, before any test counts tensors.
let batches: Batch[] = [];
const data = () => arrayDataSource(batches, { batchSize: 1, collate: ([tokens]) => tokens!, shuffleSeed: 3 });

/** The tiny Llama, with two LoRA-named adapters on lm_head for `lora` (they add a penalty the loss trains). */
function tinyModel(method: FineTuningMethod) {
  const model = createTinyLlama(CONFIG, 4);
  const adapters: NamedVariable[] =
    method === 'lora'
      ? [
          ['lm_head.lora_A.default.weight', tf.variable(tf.fill([2, CONFIG.hidden], 0.5))],
          ['lm_head.lora_B.default.weight', tf.variable(tf.fill([CONFIG.vocab, 2], 0.5))],
        ]
      : [];
  const named = [...model.named, ...adapters];
  const task = {
    loss: (tokens: Batch) =>
      tf.tidy(() =>
        adapters.reduce<tf.Scalar>(
          (l, [, v]) => tf.add(l, tf.mul(0.1, tf.sum(tf.square(v)))),
          model.loss(tokens),
        ),
      ),
    tokens: (tokens: Batch) => tokens.shape[0] * (tokens.shape[1] - 1),
  };
  return { named, task, dispose: () => named.forEach(([, v]) => v.dispose()) };
}

function planFor(method: FineTuningMethod, named: readonly NamedVariable[]) {
  return planTraining({
    settings: { method, learningRate: 0.01, switchBlockEvery: 2, updateRatio: 0.5, clipGradNorm: 1 },
    parameters: parameterInfoOf(named),
    logFn: () => {},
  });
}

describe('createTfjsTrainerBackend: a plan in, a trainer backend out', () => {
  beforeAll(async () => {
    await onBackend('cpu');
    batches = Array.from({ length: 8 }, (_, i) => randomTokens(2, 6, CONFIG.vocab, 500 + i));
  });

  for (const method of ['block', 'full', 'lora', 'sparse'] as const) {
    it(`${method}: trains exactly the plan's partition, measures its peak and frees its state`, async () => {
      const model = tinyModel(method);
      const plan = planFor(method, model.named);
      const before = snapshot(model.named);
      const tensorsBefore = tf.memory().numTensors;
      const backend = await createTfjsTrainerBackend(plan, {
        namedParameters: () => model.named,
        task: model.task,
      });
      const result = await new Trainer<Batch>({
        backend: backend.trainer,
        trainData: data(),
        maxSteps: 6,
      }).train();
      expect(result.state.globalStep).toBe(6);
      const losses = result.state.logHistory.map((l) => l.loss).filter((l) => l !== undefined);
      expect(losses.every(Number.isFinite)).toBe(true);

      // What changed is what the plan trains (K = 2 and 6 steps visit all three layer blocks).
      const after = snapshot(model.named);
      const changed = [...before.keys()].filter(
        (name) => !tf.util.arraysEqual(before.get(name)!, after.get(name)!),
      );
      expect(changed.sort()).toEqual(plan.partition.groups.flat().sort());
      expect(backend.peakMemoryBytes()).toBeGreaterThan(0);
      expect(backend.nonFiniteWeights()).toEqual([]);
      backend.dispose();
      expect(tf.memory().numTensors, 'the optimizer state is freed').toBe(tensorsBefore);
      model.dispose();
    });
  }

  it('says what trains how, names weights that went non-finite, and refuses a plan made for other parameters', async () => {
    const model = tinyModel('full');
    const bound = tfjsBackendModel({ namedParameters: () => model.named, task: model.task });
    expect(bound.parameters()).toEqual(parameterInfoOf(model.named));
    const backend = await bound.createTrainerBackend(planFor('full', model.named));
    expect(backend.trainer.description).toBe(
      `full Adam on tfjs (cpu): AdamW over ${model.named.length} trainable tensors`,
    );
    model.named[1]![1].assign(tf.fill(model.named[1]![1].shape, Number.NaN));
    expect(backend.nonFiniteWeights()).toEqual([model.named[1]![0]]);
    backend.dispose();

    const lora = tinyModel('lora');
    await expect(
      createTfjsTrainerBackend(planFor('lora', lora.named), {
        namedParameters: () => model.named,
        task: model.task,
      }),
    ).rejects.toThrow(
      /parameter 30 of the model must be lm_head.lora_A.default.weight \[2, 8\], as in the plan, got "nothing"/,
    );
    model.dispose();
    lora.dispose();
  });
});
