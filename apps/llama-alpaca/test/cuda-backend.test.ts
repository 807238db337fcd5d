import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readTrainerLog } from '@badam/callbacks';
import { Device, openDevice } from '@badam/cuda';
import { SafetensorsFile } from '@badam/safetensors';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generatedInstructions, runCommand, runEmbeddedDefault, trainOptionsFrom } from '../src/index.js';
import { writeTinyLlamaDir } from './fixtures/tiny-llama-dir.js';

// The built-in tiny Llama (4 layers, hidden 96) on generated instructions: 20 BAdam steps, K = 3, a
// checkpoint at step 10 (one step into the fourth block), on tfjs and on @badam/cuda's CPU device.
let dir: string;
let dataFile: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'badam-llama-cuda-'));
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

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { log: (m: string) => out.push(m), warn: (m: string) => err.push(m) }, out, err };
}

const backendFlags = (backend: 'tfjs' | 'cuda' | 'cpu') =>
  backend === 'cuda' ? ['--backend', 'cuda', '--cuda_device', 'cpu'] : ['--backend', backend];

const argv = (backend: 'tfjs' | 'cuda' | 'cpu', outputDir: string, extra: string[] = []) => [
  '--dataset',
  dataFile,
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
  '--logging_steps',
  '1',
  '--save_steps',
  '10',
  '--output_dir',
  outputDir,
  ...backendFlags(backend),
  ...extra,
];

async function losses(outputDir: string): Promise<Map<number, number>> {
  const log = await readTrainerLog(join(outputDir, 'trainer_log.jsonl'));
  return new Map(
    log.filter((l) => l.loss !== null).map((l) => [l.current_steps as number, l.loss as number]),
  );
}

/** The largest relative difference of the losses of the steps both runs logged (after `from`). */
function worstRelative(a: Map<number, number>, b: Map<number, number>, from = 0): number {
  let worst = 0;
  for (const [step, loss] of a) {
    if (step <= from) continue;
    const other = b.get(step);
    expect(other, `step ${step}`).toBeDefined();
    worst = Math.max(worst, Math.abs(loss - other!) / Math.abs(other!));
  }
  return worst;
}

async function run(args: string[]): Promise<void> {
  const { io, err } = capture();
  const code = await runCommand(args, io);
  expect(code, err.join('\n')).toBe(0);
}

async function allResults(outputDir: string): Promise<Record<string, number | string>> {
  return JSON.parse(await readFile(join(outputDir, 'all_results.json'), 'utf8'));
}

describe('--backend cuda on the CPU device', () => {
  const tfjsOut = () => join(dir, 'tfjs');
  const cudaOut = () => join(dir, 'cuda');

  it('trains the built-in tiny Llama with the losses of tfjs at every step', async () => {
    await run(argv('tfjs', tfjsOut()));
    await run(argv('cuda', cudaOut()));
    const onTfjs = await losses(tfjsOut());
    const onCuda = await losses(cudaOut());
    expect(onCuda.size).toBe(20);
    const worst = worstRelative(onCuda, onTfjs);
    console.log(
      `cuda-cpu vs tfjs, 20 BAdam steps: largest relative loss difference ${worst.toExponential(2)}`,
    );
    expect(worst).toBeLessThan(1e-3);

    // The results carry the allocator's peaks by kind: fp32 weights of every parameter, one layer's Adam state.
    const results = await allResults(cudaOut());
    expect(results.backend).toBe('cuda cpu reference');
    const weights = results.peak_memory_weights_bytes as number;
    expect(weights).toBe(4 * (results.parameters as number));
    expect(results.peak_memory_masters_bytes).toBe(0); // fp32 weights are their own masters
    const layer = results.trainable_parameters as number; // one layer's elements
    expect(results.peak_memory_gradients_bytes).toBe(4 * layer);
    expect(results.peak_memory_optimizer_state_bytes).toBe(8 * layer);
    expect(results.peak_memory_activations_bytes as number).toBeGreaterThan(0);
    expect(results.peak_memory_bytes as number).toBeGreaterThanOrEqual(weights + 12 * layer);

    // The final model is a Hugging Face folder that tfjs's loader reads, with the weights tfjs trained.
    const saved = await SafetensorsFile.open(join(cudaOut(), 'model.safetensors'));
    const reference = await SafetensorsFile.open(join(tfjsOut(), 'model.safetensors'));
    try {
      expect(saved.names().sort()).toEqual(reference.names().sort());
      for (const name of reference.names()) {
        const a = await saved.readFloat32(name);
        const b = await reference.readFloat32(name);
        let worstWeight = 0;
        for (let i = 0; i < a.length; i++) worstWeight = Math.max(worstWeight, Math.abs(a[i]! - b[i]!));
        expect(worstWeight, name).toBeLessThan(1e-3);
      }
    } finally {
      await saved.close();
      await reference.close();
    }
    const config = JSON.parse(await readFile(join(cudaOut(), 'config.json'), 'utf8'));
    expect(config).toMatchObject({ hidden_size: 96, num_hidden_layers: 4, torch_dtype: 'float32' });
  });

  it('--backend cpu: the CPU engine trains it with the losses of tfjs, and its checkpoint resumes on tfjs', async () => {
    const engineOut = join(dir, 'cpu');
    await run(argv('cpu', engineOut));
    const onTfjs = await losses(tfjsOut());
    const onEngine = await losses(engineOut);
    expect(onEngine.size).toBe(20);
    const worst = worstRelative(onEngine, onTfjs);
    console.log(
      `cpu engine vs tfjs, 20 BAdam steps: largest relative loss difference ${worst.toExponential(2)}`,
    );
    expect(worst).toBeLessThan(1e-3);
    expect((await allResults(engineOut)).backend).toMatch(
      /^cpu engine (generic|avx2|avx512|avx512-bf16) x\d+$/,
    );
    const moved = join(dir, 'cpu-to-tfjs');
    await cp(join(engineOut, 'checkpoint-10'), join(moved, 'checkpoint-10'), { recursive: true });
    await run(argv('tfjs', moved, ['--resume_from_checkpoint', join(moved, 'checkpoint-10')]));
    const resumed = new Map([...(await losses(moved))].filter(([s]) => s > 10));
    expect(resumed.size).toBe(10);
    expect(worstRelative(resumed, onTfjs)).toBeLessThan(1e-3);
    expect(openDevice('cpu-engine').memory().inUse).toBe(0);
  });

  it('resumes a cuda checkpoint on tfjs and a tfjs checkpoint on cuda, continuing the same losses', async () => {
    const onTfjs = await losses(tfjsOut());
    for (const [from, to] of [
      ['cuda', 'tfjs'],
      ['tfjs', 'cuda'],
    ] as const) {
      const moved = join(dir, `${from}-to-${to}`);
      await cp(join(join(dir, from), 'checkpoint-10'), join(moved, 'checkpoint-10'), { recursive: true });
      await run(argv(to, moved, ['--resume_from_checkpoint', join(moved, 'checkpoint-10')]));
      const resumed = await losses(moved);
      expect([...resumed.keys()].filter((s) => s > 10)).toHaveLength(10);
      const worst = worstRelative(new Map([...resumed].filter(([s]) => s > 10)), onTfjs);
      console.log(
        `${from} checkpoint-10 resumed on ${to}: largest relative loss difference ${worst.toExponential(2)}`,
      );
      expect(worst, `${from} -> ${to}`).toBeLessThan(1e-3);
    }
  });

  it('--bf16 trains bf16 weights (half the bytes) close to fp32, and saves them in bf16', async () => {
    const out = join(dir, 'cuda-bf16');
    await run(argv('cuda', out, ['--bf16', '--max_steps', '6', '--save_steps', '100']));
    const results = await allResults(out);
    expect(results.peak_memory_weights_bytes).toBe(2 * (results.parameters as number));
    expect(results.peak_memory_masters_bytes).toBe(4 * (results.trainable_parameters as number));
    const bf16 = await losses(out);
    const fp32 = await losses(cudaOut());
    for (const [step, loss] of bf16)
      expect(Math.abs(loss - fp32.get(step)!) / fp32.get(step)!).toBeLessThan(0.05);
    const config = JSON.parse(await readFile(join(out, 'config.json'), 'utf8'));
    expect(config.torch_dtype).toBe('bfloat16');
    // Every run freed its model: nothing is left on the process's CPU device.
    expect(openDevice('cpu').memory().inUse).toBe(0);
  });
});

describe('--model_name_or_path on --backend cuda', () => {
  it('loads a Hugging Face folder onto the device and trains it as tfjs does: checkpointing, accumulation, clipping', async () => {
    const modelDir = join(dir, 'tiny-llama');
    await writeTinyLlamaDir(modelDir, 11);
    const flags = (backend: 'tfjs' | 'cuda', out: string, extra: string[] = []) =>
      argv(backend, join(dir, out), [
        '--model_name_or_path',
        modelDir,
        '--template',
        'alpaca',
        '--max_steps',
        '6',
        '--switch_block_every',
        '2',
        '--save_steps',
        '100',
        ...extra,
      ]);
    await run(flags('tfjs', 'folder-tfjs'));
    await run(flags('cuda', 'folder-cuda'));
    await run(flags('cuda', 'folder-cuda-ckpt', ['--gradient_checkpointing']));
    const want = await losses(join(dir, 'folder-tfjs'));
    expect(worstRelative(await losses(join(dir, 'folder-cuda')), want)).toBeLessThan(1e-3);
    // Recomputing each layer in backward changes no number.
    expect(worstRelative(await losses(join(dir, 'folder-cuda-ckpt')), want)).toBeLessThan(1e-3);
    const config = JSON.parse(await readFile(join(dir, 'folder-cuda', 'config.json'), 'utf8'));
    expect(config).toMatchObject({ hidden_size: 32, num_hidden_layers: 2 });

    // Accumulation and clipping are core's on both backends: the same losses with them on.
    const hard = ['--gradient_accumulation_steps', '2', '--max_grad_norm', '0.05', '--switch_mode', 'random'];
    await run(flags('tfjs', 'folder-tfjs-accum', hard));
    await run(flags('cuda', 'folder-cuda-accum', hard));
    expect(
      worstRelative(
        await losses(join(dir, 'folder-cuda-accum')),
        await losses(join(dir, 'folder-tfjs-accum')),
      ),
    ).toBeLessThan(1e-3);
  });
});

describe('the embedded default on --backend cuda', () => {
  it('pretrains (full Adam) and instruction-tunes (BAdam) on the CPU device as on tfjs, and scores through a tfjs copy', async () => {
    const results = [];
    for (const backend of ['tfjs', 'cuda'] as const) {
      const { options } = trainOptionsFrom([
        ...backendFlags(backend),
        '--max_steps',
        '6',
        '--eval_steps',
        '6',
        '--switch_block_every',
        '2',
        '--output_dir',
        join(dir, `embedded-${backend}`),
      ]);
      const { io } = capture();
      results.push(
        await runEmbeddedDefault(options, io, { pretrainSteps: 4, trainExamples: 32, evalExamples: 8 }),
      );
    }
    const [onTfjs, onCuda] = results as [(typeof results)[0], (typeof results)[0]];
    const relative = Math.abs(
      (onCuda.metrics.eval_loss as number) / (onTfjs.metrics.eval_loss as number) - 1,
    );
    console.log(
      `embedded default, cuda-cpu vs tfjs: eval loss relative difference ${relative.toExponential(2)}`,
    );
    expect(relative).toBeLessThan(1e-3);
    expect(onCuda.metrics.eval_accuracy).toBe(onTfjs.metrics.eval_accuracy);
    expect(onCuda.after).toEqual(onTfjs.after);
    expect(openDevice('cpu').memory().inUse).toBe(0);
  });

  it('starts from the shipped pretrained weights on the device as on tfjs', async () => {
    const results = [];
    for (const backend of ['tfjs', 'cuda'] as const) {
      const { options } = trainOptionsFrom([
        ...backendFlags(backend),
        '--max_steps',
        '4',
        '--eval_steps',
        '4',
        '--switch_block_every',
        '2',
        '--output_dir',
        join(dir, `shipped-${backend}`),
      ]);
      const { io, out } = capture();
      results.push(await runEmbeddedDefault(options, io, { trainExamples: 32, evalExamples: 8 }));
      expect(out.join('\n')).toContain('starting from the shipped pretrained model');
    }
    const [onTfjs, onCuda] = results as [(typeof results)[0], (typeof results)[0]];
    // The shipped model already completes statements: the same answers before any fine-tuning on both.
    expect(onCuda.before).toEqual(onTfjs.before);
    const relative = Math.abs(
      (onCuda.metrics.eval_loss as number) / (onTfjs.metrics.eval_loss as number) - 1,
    );
    expect(relative).toBeLessThan(1e-3);
    expect(openDevice('cpu').memory().inUse).toBe(0);
  });
});

describe('--backend cuda flags', () => {
  async function refused(args: string[]): Promise<string> {
    const { io, err } = capture();
    expect(await runCommand(args, io)).toBe(2);
    return err.join('\n');
  }

  it('refuses what it cannot run before any work, saying what runs instead', async () => {
    const out = join(dir, 'refused');
    expect(
      await refused([
        '--dataset',
        dataFile,
        '--backend',
        'tfjs',
        '--cuda_device',
        'cpu',
        '--output_dir',
        out,
      ]),
    ).toMatch(
      /--cuda_device cpu chooses the device of --backend cuda, but this run uses --backend tfjs: drop it or add --backend cuda/,
    );
    expect(
      await refused([
        '--dataset',
        dataFile,
        '--backend',
        'cuda',
        '--cuda_device',
        'h200',
        '--output_dir',
        out,
      ]),
    ).toMatch(/--cuda_device must be a GPU ordinal \(0, 1, \.\.\.\) or cpu/);
    for (const method of ['lora', 'sparse'])
      expect(
        await refused([
          '--dataset',
          dataFile,
          '--backend',
          'cuda',
          '--finetuning_type',
          method,
          '--output_dir',
          out,
        ]),
      ).toMatch(
        new RegExp(
          `--finetuning_type ${method} does not run on --backend cuda yet .*use --finetuning_type block or full on cuda, or --backend tfjs for ${method}`,
        ),
      );
    expect(
      await refused([
        '--dataset',
        dataFile,
        ...backendFlags('cuda'),
        '--val_size',
        '0.1',
        '--do_predict',
        '--output_dir',
        out,
      ]),
    ).toMatch(
      /--do_predict generates with TensorFlow\.js, and --backend cuda keeps the model on the device only/,
    );
    expect(await refused(['compare', '--backend', 'cuda', '--cuda_device', 'cpu'])).toMatch(
      /compare runs on --backend tfjs/,
    );
    if (Device.cudaStatus().devices === 0) {
      expect(await refused(['--dataset', dataFile, '--backend', 'cuda', '--output_dir', out])).toMatch(
        /--backend cuda: @badam\/cuda cannot use a GPU here: .*Use --backend cpu for the CPU engine .*, or --backend tfjs/,
      );
    }
  });
});
