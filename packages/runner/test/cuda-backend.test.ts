import { join } from 'node:path';
import { readTrainerLog } from '@badam/callbacks';
import { parseFlags, UsageError } from '@badam/core';
import { Device, openDevice } from '@badam/cuda';
import { describe, expect, it } from 'vitest';
import {
  chooseAutoBackend,
  fineTune,
  prepareRunBackend,
  resolveAutoBackend,
  resolveRunOptions,
} from '../src/index.js';
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
        /^--backend cuda: @badam\/cuda cannot use a GPU here: .*\. Use --backend cpu for the CPU engine .*, or --backend tfjs$/,
      );
    }
  });
});

describe('--backend cpu and auto', () => {
  it('--backend cpu trains on the CPU engine with the losses of tfjs', async () => {
    const onTfjs = join(setup.dir, 'tfjs-engine');
    const tfjsModel = tinyLinear(3);
    await fineTune({ ...tinyMlpSpec(tfjsModel, setup.label, quiet), options: options('tfjs', onTfjs) });
    tfjsModel.free();
    const onEngine = join(setup.dir, 'engine');
    const engineOptions = options('cpu', onEngine);
    expect(engineOptions.cudaDevice).toBe('cpu-engine');
    const label = await prepareRunBackend(
      'cpu',
      engineOptions,
      { kind: 'tiny linear', cuda: true },
      () => {},
    );
    expect(label).toMatch(/^cpu engine (generic|avx2|avx512|avx512-bf16) x\d+$/);
    const device = openDevice('cpu-engine');
    const model = tinyLinear(3, device);
    await fineTune({ ...tinyMlpSpec(model, label, quiet), options: engineOptions });
    model.free();
    expect(device.memory().inUse, 'everything freed').toBe(0);
    const losses = async (dir: string) =>
      (await readTrainerLog(join(dir, 'trainer_log.jsonl'))).map((l) => l.loss as number);
    const want = await losses(onTfjs);
    for (const [i, loss] of (await losses(onEngine)).entries())
      expect(Math.abs(loss - want[i]!) / want[i]!, `step ${i + 1}`).toBeLessThan(1e-5);
    await expect(prepareRunBackend('cpu', engineOptions, { kind: 'tiny linear' }, () => {})).rejects.toThrow(
      /^--backend cpu is not available yet for tiny linear: .* Train with --backend tfjs\.$/,
    );
  });

  it('auto picks a GPU, else the CPU engine, for models and methods they train, else tfjs, and says why', async () => {
    const device = { kind: 'tiny linear', cuda: true };
    const gpu = Device.cudaStatus().devices > 0;
    expect(await chooseAutoBackend(device, 'block')).toMatchObject(
      gpu
        ? { backend: 'cuda' }
        : { backend: 'cpu', reason: expect.stringMatching(/^no GPU \(.*\): the CPU engine$/) },
    );
    expect(await chooseAutoBackend(device, 'lora')).toEqual({
      backend: 'tfjs',
      reason: expect.stringMatching(/^lora runs on tfjs only \(@badam\/cuda has no LoRA adapters yet\)$/),
    });
    expect(await chooseAutoBackend({ kind: 'RoBERTa' }, 'block')).toEqual({
      backend: 'tfjs',
      reason: 'RoBERTa trains on tfjs only (no device implementation yet)',
    });
    expect(await chooseAutoBackend(device, 'block', 'generation runs on tfjs')).toEqual({
      backend: 'tfjs',
      reason: 'generation runs on tfjs',
    });
    const out = join(setup.dir, 'auto');
    const auto = options('auto', out);
    expect(await resolveAutoBackend(auto, device)).toMatch(/^--backend auto picked (cuda|cpu): /);
    expect(auto.backend).toBe(gpu ? 'cuda' : 'cpu');
    expect(auto.cudaDevice).toBe(gpu ? 0 : 'cpu-engine');
    expect(await resolveAutoBackend(auto, device), 'a named backend stays').toBeUndefined();
    // --cuda_device names a device of --backend cuda: with auto it settles the choice
    expect(options('auto', out, 'block', ['--cuda_device', 'cpu'])).toMatchObject({
      backend: 'cuda',
      cudaDevice: 'cpu',
    });
  });
});
