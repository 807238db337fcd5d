import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  fitCallbacks,
  MetricsLogCallback,
  readTrainerLog,
  SafetensorsCheckpointStore,
} from '@badam/callbacks';
import { arrayDataSource, BlockSchedule, Trainer } from '@badam/core';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AdamW,
  BlockOptimizer,
  BlockOptimizerRatio,
  namedVariablesFromLayersModel,
  TfjsTrainerBackend,
} from '../src/index.js';
import { onBackend } from './fixtures/backends.js';
import { createTinyLlama, randomTokens, snapshot } from './fixtures/tiny-llama.js';

const CONFIG = { vocab: 16, hidden: 8, intermediate: 12, layers: 3, heads: 2 };
const root = mkdtempSync(join(tmpdir(), 'badam-tfjs-trainer-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let runs = 0;

type Batch = tf.Tensor2D;
const batches = Array.from({ length: 10 }, (_, i) => i);
const data = () =>
  arrayDataSource(batches, {
    batchSize: 1,
    collate: ([i]) => randomTokens(2, 6, CONFIG.vocab, 1000 + i!),
    shuffleSeed: 5,
  });

type Kind = 'block' | 'ratio' | 'full';
function setup(kind: Kind) {
  const model = createTinyLlama(CONFIG, 21);
  const task = {
    loss: (tokens: Batch) => model.loss(tokens),
    tokens: (tokens: Batch) => tokens.shape[0] * (tokens.shape[1] - 1),
  };
  const optimizer =
    kind === 'block'
      ? new BlockOptimizer({
          baseOptimizer: new AdamW({ learningRate: 0.01, weightDecay: 0.01 }),
          namedParameters: model.named,
          switchBlockEvery: 3,
          switchMode: 'random',
          gradientAccumulationSteps: 2,
          clipGradNorm: 1,
          verbose: 0,
        })
      : kind === 'ratio'
        ? new BlockOptimizerRatio({
            namedParameters: model.named,
            updateRatio: 0.3,
            switchBlockEvery: 4,
            maskMode: 'scatter',
            learningRate: 0.01,
            verbose: 0,
          })
        : new AdamW({ learningRate: 0.01 });
  const backend = new TfjsTrainerBackend<Batch>({
    task,
    optimizer,
    namedParameters: model.named,
    ...(kind === 'block' ? {} : { gradientAccumulationSteps: 2 }),
  });
  return { model, backend };
}

describe('TfjsTrainerBackend with the Trainer and safetensors checkpoints (cpu)', () => {
  beforeAll(async () => {
    await onBackend('cpu');
  });

  for (const kind of ['block', 'ratio', 'full'] as const) {
    it(`${kind}: 2N steps straight equal N + checkpoint + resume in a fresh model + N, bit for bit`, async () => {
      const n = 5;
      const straight = setup(kind);
      await new Trainer<Batch>({ backend: straight.backend, trainData: data(), maxSteps: 2 * n }).train();

      const outputDir = join(root, `run-${runs++}`);
      const store = new SafetensorsCheckpointStore({ outputDir });
      const first = setup(kind);
      await new Trainer<Batch>({
        backend: first.backend,
        trainData: data(),
        maxSteps: n,
        checkpoints: store,
      }).train();
      first.model.dispose();
      const resumed = setup(kind);
      const result = await new Trainer<Batch>({
        backend: resumed.backend,
        trainData: data(),
        maxSteps: 2 * n,
      }).train({
        resumeFrom: await store.load(),
      });
      expect(result.state.globalStep).toBe(2 * n);
      const want = snapshot(straight.model.named);
      const got = snapshot(resumed.model.named);
      for (const [name, values] of want) expect(got.get(name), name).toEqual(values);
      tf.disposeVariables();
    });
  }

  it('reports the active block, gradient norm and memory to the trainer', async () => {
    const { backend } = setup('block');
    const seen: Array<[number | undefined, number | undefined]> = [];
    await new Trainer<Batch>({
      backend,
      trainData: data(),
      maxSteps: 4,
      callbacks: [{ onStepEnd: (c) => void seen.push([c.progress.activeBlock, c.progress.gradNorm]) }],
    }).train();
    expect(seen).toHaveLength(4);
    // The block active after each step is the one core's schedule names (random order, seed 42, K = 3).
    const schedule = new BlockSchedule({
      blockCount: 3,
      switchMode: 'random',
      switchBlockEvery: 3,
      seed: 42,
    });
    const expected = seen.map(() => {
      schedule.advance();
      return schedule.currentBlock;
    });
    expect(seen.map(([block]) => block)).toEqual(expected);
    for (const [, norm] of seen) expect(norm).toBeGreaterThan(0);
    expect(backend.memory().source).toMatch(/tf.memory\(\) on the cpu backend/);
    tf.disposeVariables();
  });
});

describe('fitCallbacks with a real LayersModel.fit', () => {
  it('logs BAdam training from model.fit to trainer_log.jsonl', async () => {
    await onBackend('cpu');
    const model = tf.sequential({
      layers: [
        tf.layers.dense({ units: 8, inputShape: [4], activation: 'relu', name: 'layers.0.dense' }),
        tf.layers.dense({ units: 8, activation: 'relu', name: 'layers.1.dense' }),
        tf.layers.dense({ units: 1, name: 'head' }),
      ],
    });
    const optimizer = new BlockOptimizer({
      baseOptimizer: tf.train.adam(0.01),
      namedParameters: namedVariablesFromLayersModel(model),
      switchBlockEvery: 2,
      verbose: 0,
    });
    model.compile({ optimizer, loss: 'meanSquaredError' });
    const outputDir = join(root, `fit-${runs++}`);
    const x = tf.randomNormal([32, 4], 0, 1, 'float32', 1);
    const y = tf.randomNormal([32, 1], 0, 1, 'float32', 2);
    await model.fit(x, y, {
      epochs: 2,
      batchSize: 8,
      shuffle: false,
      verbose: 0,
      validationSplit: 0.25,
      callbacks: fitCallbacks({
        callbacks: [new MetricsLogCallback({ outputDir })],
        totalSteps: 6,
        batchesPerEpoch: 3,
        optimizer,
        model,
        loggingSteps: 3,
      }) as never,
    });
    const lines = await readTrainerLog(join(outputDir, 'trainer_log.jsonl'));
    expect(lines.map((l) => l.current_steps)).toEqual([3, 3, 6, 6]);
    expect(lines[0]).toMatchObject({ learning_rate: 0.01, active_block: 1 });
    expect(lines[1]!.eval_loss).toEqual(expect.any(Number));
    tf.dispose([x, y]);
    model.dispose();
  });
});
