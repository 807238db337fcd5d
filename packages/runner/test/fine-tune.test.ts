import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readTrainerLog } from '@badam/callbacks';
import { parseFlags, UsageError } from '@badam/core';
import { SafetensorsFile } from '@badam/safetensors';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import {
  FINE_TUNING_METHODS,
  type FineTuningMethod,
  fineTune,
  prepareRunBackend,
  resolveRunOptions,
  writeRunResults,
} from '../src/index.js';
import { DIALECT, FLAGS, runnerTestSetup, tinyMlpSpec } from './fixtures/test-runner.js';
import { tinyMlp } from './fixtures/tiny-mlp.js';

const setup = runnerTestSetup('badam-runner-');

const quiet = { log: () => {}, warn: () => {} };

async function train(
  method: FineTuningMethod,
  outputDir: string,
  extra: string[] = [],
  seed = 1,
  io: { log(m: string): void; warn(m: string): void } = quiet,
) {
  const flags = [
    '--learning_rate',
    '0.05',
    '--logging_steps',
    '1',
    '--output_dir',
    outputDir,
    ...(method === 'block' || method === 'sparse' ? ['--switch_block_every', '3'] : []),
    ...(method === 'sparse' ? ['--update_ratio', '0.5'] : []),
    ...extra,
  ];
  const options = resolveRunOptions(parseFlags(flags, FLAGS), method, DIALECT, { outputDir, loraRank: 2 });
  const { named, model, variables } = tinyMlp(seed);
  const run = await fineTune({ ...tinyMlpSpec(model, setup.label, io), options });
  const weights = new Map(variables().map(([n, v]) => [n, Float32Array.from(v.dataSync())]));
  for (const [, v] of variables()) v.dispose();
  return { run, weights, named };
}

describe('fineTune: every method through one kit', () => {
  for (const method of FINE_TUNING_METHODS) {
    it(`${method}: resuming from step 5 of 10 in fresh variables ends on the same weights, bit for bit`, async () => {
      const out = join(setup.dir, method);
      const straight = await train(method, out, ['--max_steps', '10', '--save_steps', '5']);
      expect((await readdir(out)).filter((e) => e.startsWith('checkpoint-')).sort()).toEqual([
        'checkpoint-10',
        'checkpoint-5',
      ]);
      // One checkpoint format for every method: PyTorch's state names.
      const file = await SafetensorsFile.open(join(out, 'checkpoint-5', 'optimizer.safetensors'));
      const names = file.names();
      await file.close();
      expect(names.some((n) => n.endsWith('.exp_avg')) && names.some((n) => n.endsWith('.exp_avg_sq'))).toBe(
        true,
      );
      const resumed = await train(
        method,
        out,
        ['--max_steps', '10', '--save_steps', '5', '--resume_from_checkpoint', join(out, 'checkpoint-5')],
        99, // other initial values: the checkpoint restores every weight
      );
      expect([...resumed.weights.keys()]).toEqual([...straight.weights.keys()]);
      for (const [name, values] of straight.weights) expect(resumed.weights.get(name), name).toEqual(values);
      expect(resumed.run.train.state.globalStep).toBe(10);
    });
  }

  it("reports what each method trains and holds: measured peak, core's estimate, trained parameters", async () => {
    const runs: Partial<Record<FineTuningMethod, Awaited<ReturnType<typeof train>>['run']>> = {};
    for (const m of FINE_TUNING_METHODS)
      runs[m] = (await train(m, join(setup.dir, `${m}-metrics`), ['--max_steps', '2'])).run;
    // Two layer blocks of 4x4 + 4; full trains all 6 tensors (72 entries); LoRA its 4 adapters (4x2 + 2x4 each).
    expect(runs.block!.metrics.trainable_parameters).toBe(20);
    expect(runs.block!.metrics.trained_parameters_per_block).toBe(2);
    expect(runs.full!.metrics.trainable_parameters).toBe(72);
    expect(runs.lora!.metrics.trainable_parameters).toBe(32);
    expect(runs.full!.estimate.optimizerState).toBe(8 * 72);
    expect(runs.block!.estimate.optimizerState).toBe(8 * 20);
    for (const r of Object.values(runs)) expect(r!.metrics.peak_memory_bytes).toBeGreaterThan(0);
    // LoRA's estimate counts adapters on the two matrices that have them.
    expect(runs.lora!.estimate.optimizerState).toBe(8 * 2 * 2 * (4 + 4));
  });

  it('logs, writes Hugging Face results files, and full Adam reports no BAdam block', async () => {
    const out = join(setup.dir, 'results');
    const { run } = await train('full', out, ['--max_steps', '3']);
    await writeRunResults(out, run.metrics);
    expect((await readdir(out)).sort()).toEqual([
      'all_results.json',
      'train_results.json',
      'trainer_log.jsonl',
      'trainer_state.json',
    ]);
    const log = await readTrainerLog(join(out, 'trainer_log.jsonl'));
    expect(log.map((l) => l.current_steps)).toEqual([1, 2, 3]);
    // Hugging Face's trainer_state.json: its schema, the train entries of the log and the final results.
    const state = JSON.parse(await readFile(join(out, 'trainer_state.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    expect(state).toMatchObject({
      global_step: 3,
      max_steps: 3,
      best_model_checkpoint: null,
      logging_steps: 1,
    });
    const history = state.log_history as Array<Record<string, number>>;
    expect(history.map((e) => e.step)).toEqual([1, 2, 3, 3]);
    expect(history.at(-1)!.train_loss).toBeTypeOf('number');
    expect(log.every((l) => l.active_block === undefined)).toBe(true);
  });
});

describe('--board', () => {
  it("shows the run on the runner's live view before training, and goes on without one", async () => {
    const out = join(setup.dir, 'board');
    const lines: string[] = [];
    const watched: Array<{ dir: string; logLines: number }> = [];
    // A live view as core's contract has it (badam-board's is the apps' to give): it reads what the run wrote.
    const runWatcher = {
      async watch(dir: string, io: { log(m: string): void }) {
        watched.push({
          dir,
          logLines: (await readTrainerLog(join(dir, 'trainer_log.jsonl')).catch(() => [])).length,
        });
        io.log(`watching ${dir}`);
      },
    };
    const io = { log: (m: string) => lines.push(m), warn: (m: string) => lines.push(m) };
    const options = resolveRunOptions(
      parseFlags(['--max_steps', '2', '--output_dir', out, '--board'], FLAGS),
      'full',
      DIALECT,
      { outputDir: out },
    );
    const { model, variables } = tinyMlp(1);
    await fineTune({ ...tinyMlpSpec(model, setup.label, io), options, runWatcher });
    expect(watched).toEqual([{ dir: out, logLines: 0 }]); // before the first step
    expect(lines).toContain(`watching ${out}`);

    lines.length = 0;
    await fineTune({
      ...tinyMlpSpec(model, setup.label, io),
      options: { ...options, overwriteOutputDir: true },
    });
    expect(lines).toContain(
      'test-runner: --board: this runner has no live view to show the run on; it goes on without one',
    );
    for (const [, v] of variables()) v.dispose();
  });
});

describe('--logging_steps', () => {
  it('unset, a short run logs often enough for a readable curve (about 50 points, every 10 steps at most)', async () => {
    for (const [steps, given, lines] of [
      [20, [], 20], // every step
      [120, [], 40], // every 3rd step
      [20, ['--logging_steps', '10'], 2], // as given
    ] as const) {
      const outputDir = join(setup.dir, `logging-${steps}-${given.length}`);
      const flags = ['--max_steps', String(steps), '--output_dir', outputDir, ...given];
      const options = resolveRunOptions(parseFlags(flags, FLAGS), 'full', DIALECT, { outputDir });
      const { model, variables } = tinyMlp(1);
      await fineTune({ ...tinyMlpSpec(model, setup.label, quiet), options });
      for (const [, v] of variables()) v.dispose();
      expect(await readTrainerLog(join(outputDir, 'trainer_log.jsonl')), `${steps} ${given}`).toHaveLength(
        lines,
      );
    }
  });
});

describe('--backend cuda', () => {
  it('says what is missing, before any work', async () => {
    const error = await prepareRunBackend(
      'cuda',
      { tfjsBackend: 'cpu', nativeKernels: false },
      { kind: 'tiny MLP' },
      () => {},
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UsageError);
    expect((error as Error).message).toMatch(
      /^--backend cuda is not available yet for tiny MLP: @badam\/cuda keeps .* but it has no tiny MLP forward and backward pass .* This machine: .*\. Train with --backend tfjs\.$/,
    );
    expect(tf.getBackend()).toBe('cpu'); // nothing was switched
  });
});

describe("fineTune: Adam's betas and epsilon reach the optimizer of every method", () => {
  for (const method of FINE_TUNING_METHODS) {
    it(`${method}: --adam_beta1 changes the run from its second update on, --adam_epsilon too`, async () => {
      const losses = async (name: string, extra: string[]) => {
        const out = join(setup.dir, `betas-${method}-${name}`);
        await train(method, out, ['--max_steps', '4', ...extra]);
        return (await readTrainerLog(join(out, 'trainer_log.jsonl'))).map((l) => l.loss as number);
      };
      const plain = await losses('default', []);
      const beta = await losses('beta1', ['--adam_beta1', '0.5']);
      const epsilon = await losses('epsilon', ['--adam_epsilon', '0.5']);
      // Adam's first update does not depend on beta1 (bias correction): the losses part from step 3.
      expect(beta.slice(0, 2)).toEqual(plain.slice(0, 2));
      expect(beta.slice(2)).not.toEqual(plain.slice(2));
      expect(epsilon.slice(1)).not.toEqual(plain.slice(1));
    });
  }
});
