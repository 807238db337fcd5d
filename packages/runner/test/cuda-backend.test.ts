import { join } from 'node:path';
import { readTrainerLog } from '@badam/callbacks';
import { parseFlags, UsageError } from '@badam/core';
import { Device, openDevice } from '@badam/cuda';
import { describe, expect, it } from 'vitest';
import { fineTune, prepareRunBackend, resolveRunOptions } from '../src/index.js';
import { DIALECT, FLAGS, runnerTestSetup, tinyMlpSpec } from './fixtures/test-runner.js';
import { tinyLinear } from './fixtures/tiny-linear.js';

const setup = runnerTestSetup('badam-runner-cuda-');
const quiet = { log: () => {}, warn: () => {} };

const options = (
  backend: string,
  outputDir: string,
  method: 'block' | 'full' = 'block',
  extra: string[] = [],
) =>
  resolveRunOptions(
    parseFlags(
      [
        '--backend',
        backend,
        ...(backend === 'cuda' ? ['--cuda_device', 'cpu'] : []),
        '--learning_rate',
        '0.05',
        '--logging_steps',
        '1',
        '--max_steps',
        '12',
        ...(method === 'block' ? ['--switch_block_every', '3'] : []),
        '--output_dir',
        outputDir,
        ...extra,
      ],
      FLAGS,
    ),
    method,
    DIALECT,
    { outputDir },
  );

describe('--backend cuda', () => {
  it('trains a model on the CPU device with the losses of tfjs, and reports the allocator by kind', async () => {
    const device = openDevice('cpu');
    for (const method of ['block', 'full'] as const) {
      const onTfjs = join(setup.dir, `tfjs-${method}`);
      const tfjsModel = tinyLinear(3);
      await fineTune({
        ...tinyMlpSpec(tfjsModel, setup.label, quiet),
        options: options('tfjs', onTfjs, method),
      });
      tfjsModel.free();

      const onCuda = join(setup.dir, `cuda-${method}`);
      const cudaModel = tinyLinear(3, device);
      const label = await prepareRunBackend(
        'cuda',
        options('cuda', onCuda, method),
        { kind: 'tiny linear', cuda: true },
        () => {},
      );
      expect(label).toBe('cuda cpu reference');
      const run = await fineTune({
        ...tinyMlpSpec(cudaModel, label, quiet),
        options: options('cuda', onCuda, method),
      });
      cudaModel.free();
      expect(device.memory().inUse, 'everything freed').toBe(0);

      const losses = async (dir: string) =>
        (await readTrainerLog(join(dir, 'trainer_log.jsonl'))).map((l) => l.loss as number);
      const want = await losses(onTfjs);
      const got = await losses(onCuda);
      expect(got).toHaveLength(12);
      for (const [i, loss] of got.entries())
        expect(Math.abs(loss - want[i]!) / want[i]!, `${method} step ${i + 1}`).toBeLessThan(1e-5);

      // 2 fp32 layers of 4 x 4; BAdam holds one block's gradient and two moments (no master: fp32 weights).
      const block = method === 'block' ? 1 : 2;
      expect(run.metrics.peak_memory_weights_bytes).toBe(2 * 64);
      expect(run.metrics.peak_memory_masters_bytes).toBe(0);
      expect(run.metrics.peak_memory_gradients_bytes).toBe(block * 64);
      expect(run.metrics.peak_memory_optimizer_state_bytes).toBe(block * 128);
      expect(run.metrics.peak_memory_bytes as number).toBeGreaterThanOrEqual(block * 192 + 128);
      const log = await readTrainerLog(join(onCuda, 'trainer_log.jsonl'));
      // Logged after the update, which frees the block's gradients (they exist from the backward to the update).
      expect(log[0]!.memory_by_kind).toMatchObject({ weights: 128, gradients: 0 });
    }
  });

  it('refuses what it cannot run, with what works instead', async () => {
    const out = join(setup.dir, 'refused');
    expect(() => options('tfjs', out, 'block', ['--cuda_device', '1'])).toThrow(
      /^--cuda_device 1 chooses the device of --backend cuda, but this run uses --backend tfjs/,
    );
    expect(() =>
      resolveRunOptions(parseFlags(['--backend', 'cuda', '--cuda_device', 'gpu0'], FLAGS), 'block', DIALECT, {
        outputDir: out,
      }),
    ).toThrow(/--cuda_device must be a GPU ordinal \(0, 1, \.\.\.\) or cpu .*got "gpu0"/);
    // What @badam/cuda cannot train yet it says itself; the runner asks before any work, in its own words.
    for (const method of ['lora', 'sparse'] as const) {
      const refused = await prepareRunBackend(
        'cuda',
        resolveRunOptions(parseFlags(['--backend', 'cuda', '--cuda_device', 'cpu'], FLAGS), method, DIALECT, {
          outputDir: out,
        }),
        { kind: 'tiny linear', cuda: true },
        () => {},
        DIALECT,
      ).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(UsageError);
      expect((refused as Error).message).toMatch(
        new RegExp(
          `^--method ${method} does not run on --backend cuda yet \\(@badam/cuda has no .*\\): use --method block or full on cuda, or --backend tfjs for ${method}$`,
        ),
      );
    }
    if (Device.cudaStatus().devices === 0) {
      const error = await prepareRunBackend(
        'cuda',
        { tfjsBackend: 'cpu', nativeKernels: false, cudaDevice: 0 },
        { kind: 'tiny linear', cuda: true },
        () => {},
      ).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(UsageError);
      expect((error as Error).message).toMatch(
        /^--backend cuda: @badam\/cuda cannot use a GPU here: .*\. Use --cuda_device cpu for @badam\/cuda's CPU reference device .*, or --backend tfjs$/,
      );
    }
  });
});
