import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Device } from '@badam/cuda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCommand, TRAIN_FLAGS, trainOptionsFrom } from '../src/index.js';

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

describe("LLaMA-Factory's flags", () => {
  it('--use_badam and the --badam_* flags set the method and its settings', () => {
    const layer = trainOptionsFrom([
      ...['--model_name_or_path', './m', '--finetuning_type', 'full', '--use_badam', 'True'],
      ...['--badam_mode', 'layer', '--badam_switch_interval', '7', '--badam_switch_mode', 'descending'],
      ...['--badam_start_block', '1', '--badam_verbose', '2'],
    ]);
    expect(layer.options).toMatchObject({
      method: 'block',
      switchBlockEvery: 7,
      switchMode: 'descending',
      startBlock: 1,
      badamVerbose: 2,
    });
    const ratio = trainOptionsFrom(
      [
        '--model_name_or_path',
        './m',
        '--use_badam',
        '--badam_mode',
        'ratio',
        '--badam_update_ratio',
        '0.2',
      ].concat(['--badam_mask_mode', 'scatter']),
    );
    expect(ratio.options).toMatchObject({ method: 'sparse', updateRatio: 0.2, maskMode: 'scatter' });
    // Without --use_badam, finetuning_type full is full Adam.
    expect(
      trainOptionsFrom(['--model_name_or_path', './m', '--finetuning_type', 'full']).options.method,
    ).toBe('full');
  });

  it('booleans as True/False and --x=True, and evaluation strategies as Hugging Face has them', () => {
    const { options } = trainOptionsFrom([
      ...[
        '--model_name_or_path',
        './m',
        '--bf16',
        'True',
        '--plot_loss=True',
        '--overwrite_output_dir',
        'False',
      ],
      ...['--val_size', '0.1', '--evaluation_strategy', 'steps', '--logging_steps', '3'],
    ]);
    expect(options).toMatchObject({ bf16: true, plotLoss: true, overwriteOutputDir: false, evalSteps: 3 });
    const no = trainOptionsFrom([
      '--model_name_or_path',
      './m',
      '--val_size',
      '0.1',
      '--eval_strategy',
      'no',
    ]);
    expect(no.options.evalSteps).toBeUndefined();
    const epoch = trainOptionsFrom([
      '--model_name_or_path',
      './m',
      '--val_size',
      '0.1',
      '--eval_strategy',
      'epoch',
    ]);
    expect(epoch.options.evalStrategy).toBe('epoch');
  });

  it('flags with no meaning here are accepted with one line each saying so; --max_samples and --ddp_timeout are kept', () => {
    const { options, notes } = trainOptionsFrom([
      ...['--model_name_or_path', './m', '--overwrite_cache', '--preprocessing_num_workers', '16'],
      ...[
        '--report_to',
        'none',
        '--ddp_timeout',
        '180000000',
        '--flash_attn',
        'auto',
        '--max_samples',
        '100',
      ],
    ]);
    expect(options.maxSamples).toBe(100);
    // LLaMA-Factory's recipes set --ddp_timeout: it bounds every collective of a run over several processes.
    expect(options.ddpTimeout).toBe(180000000);
    // --report_to none is Hugging Face's own "no integration": nothing to ignore.
    expect(options.reportTo).toEqual([]);
    expect(notes).toHaveLength(3);
    expect(notes.join('\n')).not.toContain('--ddp_timeout');
    expect(notes[0]).toMatch(/^--overwrite_cache is ignored: /);
    expect(notes.join('\n')).toContain('--flash_attn is ignored');
  });

  it.each([
    [
      ['--use_badam', '--finetuning_type', 'lora'],
      '--use_badam trains with --finetuning_type block, but --finetuning_type lora was given',
    ],
    [
      ['--use_badam', '--badam_mode', 'ratio', '--finetuning_type', 'block'],
      '--use_badam --badam_mode ratio trains with --finetuning_type sparse, but --finetuning_type block was given',
    ],
    [
      ['--badam_switch_interval', '50', '--switch_block_every', '100'],
      '--badam_switch_interval 50 and --switch_block_every 100 set the same thing to different values',
    ],
    [
      ['--badam_switch_mode', 'random', '--switch_mode', 'ascending'],
      '--badam_switch_mode random and --switch_mode ascending',
    ],
    [['--badam_mode', 'layer'], '--badam_mode layer takes effect with --use_badam'],
    [['--do_train', 'False'], '--do_train false'],
    [
      ['--val_size', '0.1', '--eval_strategy', 'no', '--eval_steps', '5'],
      '--eval_strategy no turns evaluation off, but --eval_steps 5',
    ],
    [['--eval_strategy', 'steps'], '--eval_strategy steps needs a validation set'],
    [['--bf16=yes'], '--bf16 must be true or false'],
    [['--ddp_timeout', '0'], '--ddp_timeout must be an integer >= 1, got "0"'],
  ])('%j is refused naming both sides', async (argv, message) => {
    const { io, err } = capture();
    expect(
      await runCommand([...argv, '--model_name_or_path', './m', '--output_dir', join(dir, 'never')], io),
    ).toBe(2);
    expect(err.join('\n')).toContain(message);
    expect(existsSync(join(dir, 'never'))).toBe(false);
  });

  it('a Hub id as the model says how to fetch it and which folder to pass, for training and chat', async () => {
    for (const argv of [
      ['--model_name_or_path', 'meta-llama/Llama-3.2-1B', '--output_dir', join(dir, 'never')],
      ['chat', '--model_name_or_path', 'meta-llama/Llama-3.2-1B', '--query', 'hi'],
    ]) {
      const { io, err } = capture();
      expect(await runCommand(argv, io)).toBe(2);
      expect(err.join('\n')).toContain(
        '--model_name_or_path meta-llama/Llama-3.2-1B is not a folder here; as a Hugging Face Hub id it needs fetching first (badam-llama loads models from local folders only): `huggingface-cli download meta-llama/Llama-3.2-1B --local-dir models/Llama-3.2-1B`, then pass --model_name_or_path models/Llama-3.2-1B',
      );
    }
    expect(existsSync(join(dir, 'never'))).toBe(false);
  });

  it('a recipe file with a mistake names the file, before any work', async () => {
    const cases: Array<[string, string, string]> = [
      [
        'typo.yaml',
        'use_badam: true\nbadam_switch_intervl: 50\n',
        'typo.yaml: unknown flag --badam_switch_intervl; did you mean --badam_switch_interval?',
      ],
      ['bad.yaml', 'learning_rate: [1, {a: 2}]\n', 'bad.yaml: learning_rate is a list of mappings'],
      ['value.json', '{"learning_rate": "fast"}', 'value.json: --learning_rate must be a number'],
      ['list.yaml', '- a\n- b\n', 'list.yaml must hold one mapping of flag names to values'],
      ['broken.yaml', 'a: [\n', 'broken.yaml is not valid YAML'],
    ];
    for (const [name, text, message] of cases) {
      await writeFile(join(dir, name), text);
      const { io, err } = capture();
      expect(await runCommand(['train', join(dir, name)], io)).toBe(2);
      expect(err.join('\n')).toContain(message);
    }
    const { io, err } = capture();
    expect(await runCommand(['train', join(dir, 'absent.yaml')], io)).toBe(2);
    expect(err.join('\n')).toContain('absent.yaml: no such file');
  });
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
    [['--backend', 'cuda', '--cuda_device', 'gpu'], '--cuda_device must be a GPU ordinal (0, 1, ...) or cpu'],
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
    const external = trainOptionsFrom(['--model_name_or_path', './some/dir']);
    expect(external.embedded).toBe(false);
    expect(external.options).toMatchObject({
      learningRate: 1e-5,
      switchBlockEvery: undefined,
      outputDir: 'output/block',
    });
  });

  it('prints help with every flag and exits 0, for -h too', async () => {
    for (const argv of [['--help'], ['-h'], ['train', '-h']]) {
      const { io, out } = capture();
      expect(await runCommand(argv, io)).toBe(0);
      const help = out.join('\n');
      for (const flag of Object.keys(TRAIN_FLAGS)) expect(help).toMatch(new RegExp(`^  --${flag} `, 'm'));
      // A flag shows its LLaMA-Factory name where that differs.
      expect(help).toMatch(/--switch_block_every .*as LLaMA-Factory --badam_switch_interval/);
      expect(help).toMatch(/--overwrite_cache .*ignored: /);
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

  it.each([
    [['--seeds', '0'], '--seeds must be an integer >= 1, got "0"'],
    [
      ['--learning_rates', '1e-3,fast'],
      '--learning_rates must be numbers > 0 separated by commas (e.g. 1e-3,2e-3,5e-3), got "1e-3,fast" ("fast" is not a number > 0)',
    ],
    [['--learning_rates', '1e-3,1e-3'], '--learning_rates lists a rate twice'],
  ])('compare checks %j before any work', async (argv, message) => {
    const out = join(dir, `compare-early-${argv.join('').replace(/[^a-z0-9]/gi, '')}`);
    const { io, err } = capture();
    expect(await runCommand(['compare', ...argv, '--output_dir', out], io)).toBe(2);
    expect(err.join('\n')).toContain(message);
    expect(existsSync(out)).toBe(false);
  });

  it('--seeds and --learning_rates belong to compare: training refuses them', async () => {
    const { io, err } = capture();
    expect(await runCommand(['--seeds', '2', '--output_dir', join(dir, 'no-seeds')], io)).toBe(2);
    expect(err.join('\n')).toContain('--seeds');
  });

  it('a --dataset file that does not exist says so', async () => {
    const { io, err } = capture();
    const missing = join(dir, 'missing.json');
    expect(await runCommand(['--dataset', missing, '--output_dir', join(dir, 'missing-out')], io)).toBe(2);
    expect(err.join('\n')).toContain(`${missing} does not exist, and there is no data/dataset_info.json`);
  });

  it.skipIf(Device.cudaStatus().devices > 0)(
    '--backend cuda without a GPU says why before anything is written, for training and compare',
    async () => {
      for (const [sub, message] of [
        [
          [],
          /--backend cuda: @badam\/cuda cannot use a GPU here: .*Use --backend cpu for the CPU engine .*, or --backend tfjs/,
        ],
        [['compare'], /compare runs on --backend tfjs/],
      ] as const) {
        const out = join(dir, `cuda-${sub.length}`);
        const { io, err } = capture();
        expect(await runCommand([...sub, '--backend', 'cuda', '--output_dir', out], io)).toBe(2);
        expect(err.join('\n')).toMatch(message);
        expect(existsSync(out)).toBe(false);
      }
    },
  );

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
