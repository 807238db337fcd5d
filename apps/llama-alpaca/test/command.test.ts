import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCommand, trainOptionsFrom } from '../src/index.js';

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return {
    io: {
      log: (m: string) => out.push(m),
      warn: (m: string) => err.push(m),
      write: (m: string) => out.push(m),
    },
    out,
    err,
  };
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'badam-llama-cmd-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('badam-llama flags', () => {
  it('suggests the nearest flag for a misspelt one and exits 2', async () => {
    const { io, err } = capture();
    expect(await runCommand(['--switch_block_evry', '5'], io)).toBe(2);
    expect(err.join('\n')).toContain('unknown flag --switch_block_evry; did you mean --switch_block_every?');
  });

  it.each([
    [['--switch_block_every', '0'], '--switch_block_every must be >= 1 or -1, got 0'],
    [
      ['--finetuning_type', 'full', '--switch_block_every', '5'],
      '--switch_block_every applies to --finetuning_type block or sparse',
    ],
    [['--learning_rate', 'fast'], '--learning_rate'],
    [['--finetuning_type', 'qlora'], 'one of block, full, lora, sparse'],
    [['--backend', 'cuda'], '--backend cuda is not available yet'],
    [['--eval_steps', '10', '--model_name_or_path', 'x'], '--eval_steps needs a validation set'],
    [['--resume_from_checkpoint', 'true', '--overwrite_output_dir'], 'contradict'],
    [['--cutoff_len'], '--cutoff_len needs a value'],
    [['train', 'extra'], 'unexpected argument "extra"'],
  ])('rejects %j with a message that says what to change', async (argv, message) => {
    const { io, err } = capture();
    expect(await runCommand(argv, io)).toBe(2);
    expect(err.join('\n')).toContain(message);
  });

  it('gives the embedded default its hyperparameters, keeping BAdam flags off other finetuning types', () => {
    const block = trainOptionsFrom([]);
    expect(block.embedded).toBe(true);
    expect(block.options).toMatchObject({
      method: 'block',
      switchBlockEvery: 50,
      maxSteps: 800,
      learningRate: 2e-3,
    });
    const full = trainOptionsFrom(['--finetuning_type', 'full', '--max_steps', '3']);
    expect(full.options).toMatchObject({ method: 'full', switchBlockEvery: undefined, maxSteps: 3 });
    const external = trainOptionsFrom(['--model_name_or_path', 'some/dir']);
    expect(external.embedded).toBe(false);
    expect(external.options).toMatchObject({
      learningRate: 1e-5,
      switchBlockEvery: undefined,
      outputDir: 'output/block',
    });
  });

  it('prints help with every flag and exits 0', async () => {
    const { io, out } = capture();
    expect(await runCommand(['--help'], io)).toBe(0);
    for (const flag of [
      '--switch_block_every',
      '--finetuning_type',
      '--model_name_or_path',
      '--resume_from_checkpoint',
    ]) {
      expect(out.join('\n')).toContain(flag);
    }
  });

  it('refuses an output directory holding an earlier run before any work, the embedded default too', async () => {
    // An earlier run's checkpoints and model: the embedded default used to overwrite them (its defaults set
    // overwrite_output_dir) after first writing P/pretrain.
    const out = join(dir, 'occupied');
    await rm(out, { recursive: true, force: true });
    await mkdir(join(out, 'checkpoint-40'), { recursive: true });
    await writeFile(join(out, 'checkpoint-40', 'model.safetensors'), 'earlier');
    await writeFile(join(out, 'config.json'), 'mine');
    for (const argv of [
      ['--max_steps', '2', '--output_dir', out],
      ['--max_steps', '2', '--output_dir', out, '--overwrite_output_dir', 'false'],
      ['compare', '--max_steps', '2', '--output_dir', out],
    ]) {
      const { io, err } = capture();
      const began = performance.now();
      expect(await runCommand(argv, io)).toBe(2);
      expect(performance.now() - began).toBeLessThan(5000); // refused before pretraining, not after
      expect(err.join('\n')).toContain(
        'holds earlier work (1 checkpoint, config.json): pass --overwrite_output_dir to replace it',
      );
    }
    expect((await readdir(out)).sort()).toEqual(['checkpoint-40', 'config.json']);
    expect(await readFile(join(out, 'checkpoint-40', 'model.safetensors'), 'utf8')).toBe('earlier');
  });

  it.each([
    [['--top_p', '5', '--do_predict', '--val_size', '0.1'], '--top_p must be a number > 0 and <= 1, got "5"'],
    [['--learning_rate='], '--learning_rate must be a number >= 0, got "" (the value is empty)'],
    [['--seed='], '--seed must be an integer >= 0, got "" (the value is empty)'],
    [['--warmup_ratio', '1.5'], '--warmup_ratio must be a number >= 0 and <= 1'],
    [
      ['--finetuning_type', 'lora', '--lora_target', 'q_proj,qkv'],
      '--lora_target qkv is not a Llama linear layer',
    ],
    [['--cutoff_len', '4096'], '--cutoff_len 4096 is more than the 128 positions this model takes'],
    [
      ['--val_size', '2.5', '--model_name_or_path', 'x'],
      '--val_size must be a fraction in [0, 1) or a whole number',
    ],
    [
      ['--resume_from_checkpoint', '/nonexistent/checkpoint-5'],
      '/nonexistent/checkpoint-5: no such directory',
    ],
  ])("checks %j before any work, in the flag's own name", async (argv, message) => {
    const out = join(dir, `early-${argv.join('').replace(/[^a-z0-9]/gi, '')}`);
    const { io, err } = capture();
    const began = performance.now();
    expect(await runCommand([...argv, '--output_dir', out], io)).toBe(2);
    expect(performance.now() - began).toBeLessThan(5000);
    expect(err.join('\n')).toContain(message);
    expect(existsSync(join(out, 'pretrain'))).toBe(false);
  });

  it('a --dataset file that does not exist says so', async () => {
    const { io, err } = capture();
    const missing = join(dir, 'missing.json');
    expect(await runCommand(['--dataset', missing, '--output_dir', join(dir, 'missing-out')], io)).toBe(2);
    expect(err.join('\n')).toContain(`${missing} does not exist, and there is no data/dataset_info.json`);
  });

  it('--backend cuda says what is missing before anything is written, for training and compare', async () => {
    for (const sub of [[], ['compare']]) {
      const out = join(dir, `cuda-${sub.length}`);
      const { io, err } = capture();
      expect(await runCommand([...sub, '--backend', 'cuda', '--output_dir', out], io)).toBe(2);
      expect(err.join('\n')).toMatch(
        /--backend cuda is not available yet for Llama: .* no Llama forward and backward pass .* This machine: .* Train with --backend tfjs/,
      );
      expect(existsSync(out)).toBe(false);
    }
  });

  it('chat checks --top_p before loading anything', async () => {
    const { io, err } = capture();
    expect(await runCommand(['chat', '--top_p', '0', '--model_name_or_path', join(dir, 'none')], io)).toBe(2);
    expect(err.join('\n')).toContain('--top_p must be a number > 0 and <= 1, got "0"');
  });

  it('chat without a model says which flag is missing', async () => {
    const { io, err } = capture();
    expect(await runCommand(['chat'], io)).toBe(2);
    expect(err.join('\n')).toContain('chat needs --model_name_or_path');
    expect(existsSync(join(dir, 'never'))).toBe(false);
  });
});
