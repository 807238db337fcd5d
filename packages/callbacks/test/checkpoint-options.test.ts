import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Trainer } from '@badam/core';
import { SafetensorsFile } from '@badam/safetensors';
import { afterAll, describe, expect, it } from 'vitest';
import {
  BestModelCallback,
  CheckpointError,
  huggingFaceTrainerState,
  SafetensorsCheckpointStore,
} from '../src/index.js';
import { backend, data } from './fixtures/linear-task.mjs';

// The checkpoint store's Hugging Face options: all kept, the model only, 16-bit weights, the best kept.

const root = mkdtempSync(join(tmpdir(), 'badam-checkpoint-options-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let runs = 0;
const freshDir = () => join(root, `run-${runs++}`);

describe('SafetensorsCheckpointStore options', () => {
  it('keepLast Infinity keeps every checkpoint (save_total_limit unset)', async () => {
    const outputDir = freshDir();
    const store = new SafetensorsCheckpointStore({ outputDir, keepLast: Number.POSITIVE_INFINITY });
    await new Trainer({
      backend: backend(),
      trainData: data(),
      maxSteps: 9,
      saveSteps: 3,
      checkpoints: store,
    }).train();
    expect(readdirSync(outputDir).sort()).toEqual(['checkpoint-3', 'checkpoint-6', 'checkpoint-9']);
  });

  it('modelOnly saves no optimizer files, and loading one for resume says why it cannot', async () => {
    const outputDir = freshDir();
    const store = new SafetensorsCheckpointStore({ outputDir, modelOnly: true });
    await new Trainer({
      backend: backend(),
      trainData: data(),
      maxSteps: 4,
      saveSteps: 2,
      checkpoints: store,
    }).train();
    const files = readdirSync(join(outputDir, 'checkpoint-4'));
    expect(files).not.toContain('optimizer.safetensors');
    expect(files).not.toContain('optimizer_state.json');
    await expect(store.load(join(outputDir, 'checkpoint-4'))).rejects.toThrow(CheckpointError);
    await expect(store.load(join(outputDir, 'checkpoint-4'))).rejects.toThrow(/--save_only_model/);
    expect((await store.loadWeights(join(outputDir, 'checkpoint-4'))).length).toBeGreaterThan(0);
  });

  it('weightsDtype bfloat16 stores BF16 and loads back as fp32, exactly for bf16 values', async () => {
    const outputDir = freshDir();
    const store = new SafetensorsCheckpointStore({ outputDir, weightsDtype: 'bfloat16' });
    // Values a bf16 backend holds: exactly representable in bf16.
    const values = Float32Array.from([1, -2.5, 0.15625, 2 ** 127, -(2 ** -126)]);
    const snapshot = {
      weights: [{ name: 'w', dtype: 'float32' as const, shape: [5], data: values }],
      optimizer: { state: { version: 1 }, tensors: [] },
    };
    const trainer = new Trainer({ backend: backend(), trainData: data(), maxSteps: 1 });
    const path = await store.save(1, snapshot, structuredClone(trainer.state) as never);
    const file = await SafetensorsFile.open(join(path, 'model.safetensors'));
    expect(file.entry('w').dtype).toBe('BF16');
    await file.close();
    const [loaded] = await store.loadWeights(path);
    expect(loaded!.dtype).toBe('float32');
    expect(Array.from(loaded!.data as Float32Array)).toEqual(Array.from(values));
  });

  it('BestModelCallback names the best checkpoint, which rotation keeps, and trainer_state.json records it', async () => {
    const outputDir = freshDir();
    const store = new SafetensorsCheckpointStore({ outputDir, keepLast: 1 });
    // Losses that are best at step 4: eval at 2, 4, 6, 8.
    const losses: Record<number, number> = { 2: 3, 4: 1, 6: 2, 8: 4 };
    const best = new BestModelCallback({
      outputDir,
      metric: 'eval_loss',
      greaterIsBetter: false,
      onBest: (dir) => store.protect(dir),
    });
    const trainer = new Trainer({
      backend: backend(),
      trainData: data(),
      maxSteps: 8,
      saveSteps: 2,
      checkpoints: store,
      callbacks: [
        {
          // Stands in for the evaluation: the metric of each step, before the best-model callback sees it.
          onStepEnd: async (context) => {
            const step = context.progress.step;
            if (losses[step] !== undefined) await best.onEvaluate(context, { eval_loss: losses[step]! });
          },
        },
        best,
      ],
    });
    const { state } = await trainer.train();
    expect(best.best).toEqual({
      best_metric: 1,
      best_global_step: 4,
      best_model_checkpoint: join(outputDir, 'checkpoint-4'),
    });
    expect(readdirSync(outputDir).sort()).toEqual(['checkpoint-4', 'checkpoint-8']);
    const hf = huggingFaceTrainerState(state, {
      loggingSteps: 1,
      evalSteps: 2,
      saveSteps: 2,
      trainBatchSize: 1,
      numTrainEpochs: 1,
    });
    expect(hf).toMatchObject({
      best_metric: 1,
      best_global_step: 4,
      best_model_checkpoint: join(outputDir, 'checkpoint-4'),
    });
  });
});
