import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsCheckpointStore } from '@badam/callbacks';
import {
  BlockOptimizer,
  BlockTrainer,
  type NamedArray,
  type OptimizerDescription,
  ReferenceBackend,
  type TrainingSnapshot,
} from '@badam/core';
import { planRun } from '@badam/runner';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generatedInstructions, runCommand, trainOptionsFrom } from '../src/index.js';
import { writeTinyLlamaDir } from './fixtures/tiny-llama-dir.js';

let dir: string;
let modelDir: string;
let dataFile: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'badam-llama-cross-'));
  modelDir = join(dir, 'tiny-llama');
  await writeTinyLlamaDir(modelDir, 11);
  await mkdir(join(dir, 'data'));
  dataFile = join(dir, 'data', 'tasks.json');
  const records = generatedInstructions(48, 0, 5).train.map(({ instruction, input, output }) => ({
    instruction,
    input,
    output,
  }));
  await writeFile(dataFile, JSON.stringify(records));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const quiet = { log: () => {}, warn: () => {} };
// 20 steps, K = 3 over the 2 layer blocks: the checkpoint at step 10 is taken one step into block 1.
const argv = (outputDir: string) => [
  '--model_name_or_path',
  modelDir,
  '--dataset',
  dataFile,
  '--template',
  'alpaca',
  '--cutoff_len',
  '48',
  '--per_device_train_batch_size',
  '4',
  '--learning_rate',
  '2e-3',
  '--weight_decay',
  '0.01',
  '--max_steps',
  '20',
  '--switch_block_every',
  '3',
  '--save_steps',
  '10',
  '--save_total_limit',
  '3',
  '--output_dir',
  outputDir,
];

const byName = (arrays: readonly NamedArray[]) => new Map(arrays.map((a) => [a.name, a]));

function expectSameToTheBit(a: TrainingSnapshot, b: TrainingSnapshot): void {
  expect(b.optimizer.state).toEqual(a.optimizer.state);
  for (const [what, x, y] of [
    ['weights', a.weights, b.weights],
    ['optimizer tensors', a.optimizer.tensors, b.optimizer.tensors],
  ] as const) {
    const left = byName(x);
    const right = byName(y);
    expect([...right.keys()].sort(), what).toEqual([...left.keys()].sort());
    for (const [name, t] of left) {
      expect(right.get(name)!.shape, name).toEqual(t.shape);
      expect(right.get(name)!.data, name).toEqual(t.data);
    }
  }
}

describe('one checkpoint format: tfjs <-> the reference backend', () => {
  it('a tfjs checkpoint of the tiny Llama restores on ReferenceBackend to the bit, and back on tfjs resumes exactly', async () => {
    // 1. The tiny Llama, 20 steps of BAdam on tfjs, checkpoints at 10 and 20.
    const straight = join(dir, 'straight');
    expect(await runCommand(argv(straight), quiet)).toBe(0);
    const saved = await new SafetensorsCheckpointStore({ outputDir: straight }).load(
      join(straight, 'checkpoint-10'),
    );
    expect(saved.snapshot.optimizer.tensors.map((t) => t.name)).toContain(
      'model.layers.1.self_attn.q_proj.weight.exp_avg',
    );

    // 2. The same parameters on core's ReferenceBackend, with the BlockOptimizer the runner kit plans for
    //    these flags: restore the tfjs checkpoint, and its own snapshot is the checkpoint, bit for bit.
    const { options } = trainOptionsFrom(argv(straight));
    const parameters = saved.snapshot.weights.map((w) => ({
      name: w.name,
      shape: [...w.shape],
      dtype: 'float32' as const,
      values: w.data as Float32Array,
    }));
    const plan = planRun({
      options,
      dialect: {},
      parameters,
      partition: {},
      trainExamples: 0,
      defaultSwitchBlockEvery: 'suggest',
      logFn: () => {},
    });
    if (plan.optimizer.kind !== 'block') throw new Error('BAdam plans a BlockOptimizer');
    const reference = new BlockTrainer<never, OptimizerDescription, ArrayLike<number>>(
      new BlockOptimizer(
        { ...plan.optimizer.options, namedParameters: parameters },
        new ReferenceBackend(parameters),
      ),
      {
        lossAndGradients: () => {
          throw new Error('the reference backend has no Llama: this test moves state, not gradients');
        },
        evaluate: () => ({ loss: 0, weight: 0 }),
      },
    );
    await reference.restore(saved.snapshot);
    const onReference = await reference.snapshot();
    expectSameToTheBit(saved.snapshot, onReference);

    // 3. The other way: the reference backend's snapshot saved as a checkpoint, resumed on tfjs; the last
    //    10 steps end on the uninterrupted run's weights, bit for bit.
    const moved = join(dir, 'moved');
    await new SafetensorsCheckpointStore({ outputDir: moved }).save(10, onReference, saved.trainerState);
    expect(
      await runCommand([...argv(moved), '--resume_from_checkpoint', join(moved, 'checkpoint-10')], quiet),
    ).toBe(0);
    const final = await readFile(join(straight, 'model.safetensors'));
    expect((await readFile(join(moved, 'model.safetensors'))).equals(final)).toBe(true);
    const end = await new SafetensorsCheckpointStore({ outputDir: moved }).load(join(moved, 'checkpoint-20'));
    const straightEnd = await new SafetensorsCheckpointStore({ outputDir: straight }).load(
      join(straight, 'checkpoint-20'),
    );
    expectSameToTheBit(straightEnd.snapshot, end.snapshot);
  });
});
