import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HF_TRAINER_STATE_FIELDS } from '@badam/callbacks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { generatedInstructions, runCommand } from '../src/index.js';
import { writeTinyLlamaDir } from './fixtures/tiny-llama-dir.js';

// What a LLaMA-Factory user brings, run as written: the BAdam README's command and LLaMA-Factory's BAdam
// recipe, on a tiny model folder and the shared Alpaca sample registered in a dataset_info.json.

const here = dirname(fileURLToPath(import.meta.url));
const sharedData = resolve(process.env.BADAM_SHARED_DATA ?? join(here, '../../../../shared/data'));
const alpacaDemo = join(sharedData, 'alpaca', 'alpaca_en_demo.json');
const recipe = join(here, '..', 'examples', 'llama3_badam_sft.yaml');

/** The BAdam README's command, word for word, but for the output directory it names. */
const README_COMMAND = [
  ...['--stage', 'sft', '--do_train', '--dataset', 'alpaca_gpt4_en', '--template', 'default'],
  ...['--finetuning_type', 'block', '--overwrite_cache', '--per_device_train_batch_size', '2'],
  ...[
    '--per_device_eval_batch_size',
    '2',
    '--gradient_accumulation_steps',
    '8',
    '--lr_scheduler_type',
    'cosine',
  ],
  ...['--logging_steps', '1', '--save_steps', '1000', '--val_size', '500', '--eval_steps', '20'],
  ...['--evaluation_strategy', 'steps', '--learning_rate', '1e-6', '--num_train_epochs', '3'],
  ...['--overwrite_output_dir', '--plot_loss', '--switch_block_every', '100', '--switch_mode', 'random'],
  ...['--bf16', 'True'],
];

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { log: (m: string) => out.push(m), warn: (m: string) => err.push(m) }, out, err };
}

let dir: string;
let modelDir: string;
let dataDir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'badam-llama-factory-'));
  modelDir = join(dir, 'tiny-llama');
  await writeTinyLlamaDir(modelDir, 7);
  // LLaMA-Factory's data/ folder: names in dataset_info.json, files beside it.
  dataDir = join(dir, 'data');
  await mkdir(dataDir, { recursive: true });
  if (existsSync(alpacaDemo)) await symlink(alpacaDemo, join(dataDir, 'alpaca_en_demo.json'));
  await writeFile(
    join(dataDir, 'dataset_info.json'),
    JSON.stringify({
      alpaca_gpt4_en: { file_name: 'alpaca_en_demo.json' },
      alpaca_en_demo: { file_name: 'alpaca_en_demo.json' },
    }),
  );
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** transformers.TrainerState's fields, as trainer_state.json holds them. */
const HF_FIELDS = [...HF_TRAINER_STATE_FIELDS].sort();

async function readJson(path: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
}

/** The files a model folder holds as LLaMA-Factory and Hugging Face leave one. */
const MODEL_FILES = [
  'config.json',
  'model.safetensors',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
];

/** The files LLaMA-Factory leaves in an output directory, and in each checkpoint, checked file by file. */
async function expectLlamaFactoryLayout(
  out: string,
  run: { steps: number; checkpoint: number; loggingSteps: number; evalSteps: number; batchSize: number },
): Promise<void> {
  const files = await readdir(out);
  for (const file of [
    ...MODEL_FILES,
    'trainer_log.jsonl',
    'trainer_state.json',
    'all_results.json',
    'train_results.json',
    'eval_results.json',
    'training_loss.png',
    'training_eval_loss.png',
    `checkpoint-${run.checkpoint}`,
  ])
    expect(files, file).toContain(file);
  const log = (await readFile(join(out, 'trainer_log.jsonl'), 'utf8')).trim().split('\n');
  expect(JSON.parse(log[0]!)).toMatchObject({ current_steps: run.loggingSteps });
  const results = await readJson(join(out, 'eval_results.json'));
  expect(Number.isFinite(results.eval_loss)).toBe(true);

  const state = await readJson(join(out, 'trainer_state.json'));
  expect(Object.keys(state).sort()).toEqual(HF_FIELDS);
  expect(state).toMatchObject({
    global_step: run.steps,
    max_steps: run.steps,
    logging_steps: run.loggingSteps,
    eval_steps: run.evalSteps,
    save_steps: run.checkpoint,
    train_batch_size: run.batchSize,
    best_model_checkpoint: null,
  });
  expect(state.total_flos).toBeGreaterThan(0);
  const history = state.log_history as Array<Record<string, number>>;
  expect(history.filter((e) => e.loss !== undefined)).toHaveLength(run.steps / run.loggingSteps);
  expect(history.some((e) => e.eval_loss !== undefined)).toBe(true);
  expect(history.at(-1)).toMatchObject({ step: run.steps, train_loss: expect.any(Number) });

  const checkpoint = join(out, `checkpoint-${run.checkpoint}`);
  const inCheckpoint = await readdir(checkpoint);
  for (const file of [
    ...MODEL_FILES,
    'trainer_state.json',
    'optimizer.safetensors',
    'badam_llama.json',
    'badam_trainer_state.json',
  ])
    expect(inCheckpoint, `checkpoint-${run.checkpoint}/${file}`).toContain(file);
  const saved = await readJson(join(checkpoint, 'trainer_state.json'));
  expect(Object.keys(saved).sort()).toEqual(HF_FIELDS);
  expect(saved.global_step).toBe(run.checkpoint);
  expect(await readJson(join(checkpoint, 'badam_llama.json'))).toMatchObject({ template: 'default' });
}

describe.skipIf(!existsSync(alpacaDemo))('LLaMA-Factory commands and recipes run as written', () => {
  it("runs the BAdam README's command, --dataset resolved through --dataset_dir's dataset_info.json", async () => {
    const out = join(dir, 'readme');
    const run = capture();
    const local = ['--model_name_or_path', modelDir, '--dataset_dir', dataDir, '--output_dir', out];
    // Small counts for a test: fewer examples, steps and a checkpoint within them.
    const small = ['--max_samples', '64', '--val_size', '8', '--max_steps', '4', '--eval_steps', '2'];
    const code = await runCommand([...README_COMMAND, ...local, ...small, '--save_steps', '2'], run.io);
    expect(code, run.err.join('\n')).toBe(0);
    const err = run.err.join('\n');
    expect(err).toContain('badam-llama: --overwrite_cache is ignored: ');
    // no --backend: auto trains on a GPU or the CPU engine, in bf16 as --bf16 asks (tfjs would stay fp32)
    expect(run.out.join('\n')).toMatch(/--backend auto picked (cuda|cpu): /);
    expect(err).not.toContain('--bf16 on tfjs');
    expect(run.out.join('\n')).toContain('56 training and 8 validation examples (sft, template default');
    await expectLlamaFactoryLayout(out, {
      steps: 4,
      checkpoint: 2,
      loggingSteps: 1,
      evalSteps: 2,
      batchSize: 2,
    });

    // A checkpoint is a model folder: training starts from it, and chat talks to it.
    const checkpoint = join(out, 'checkpoint-2');
    const again = capture();
    const from = [
      '--model_name_or_path',
      checkpoint,
      '--dataset',
      'alpaca_gpt4_en',
      '--dataset_dir',
      dataDir,
    ];
    const more = ['--max_samples', '16', '--max_steps', '1', '--output_dir', join(dir, 'from-checkpoint')];
    expect(await runCommand([...from, ...more], again.io), again.err.join('\n')).toBe(0);
    expect(again.err.join('\n')).not.toContain('not used');
    const chat = capture();
    const query = ['--query', 'Say hi', '--max_new_tokens', '4', '--template', 'default'];
    expect(
      await runCommand(['chat', '--model_name_or_path', checkpoint, ...query], chat.io),
      chat.err.join('\n'),
    ).toBe(0);
    expect(chat.out).toHaveLength(1);
  });

  it("runs LLaMA-Factory's BAdam recipe (examples/llama3_badam_sft.yaml), flags after it overriding its keys", async () => {
    const out = join(dir, 'recipe');
    const run = capture();
    const code = await runCommand(
      [
        ...['train', recipe, '--model_name_or_path', modelDir, '--dataset_dir', dataDir, '--output_dir', out],
        // The tiny model has a byte tokenizer (no Llama 3 special tokens) and 128 positions.
        ...[
          '--template',
          'default',
          '--cutoff_len',
          '128',
          '--max_samples',
          '40',
          '--val_size',
          '4',
          '--max_steps',
          '4',
        ],
        ...['--eval_steps', '2', '--save_steps', '2', '--logging_steps', '1', '--badam_switch_interval', '2'],
      ],
      run.io,
    );
    expect(code, run.err.join('\n')).toBe(0);
    const text = run.out.join('\n');
    expect(text).toContain('36 training and 4 validation examples (sft, template default');
    // use_badam + badam_mode layer is BAdam over layers, switching every 2 steps in ascending order.
    expect(text).toContain('BAdam: step 2: block 0 -> 1');
    await expectLlamaFactoryLayout(out, {
      steps: 4,
      checkpoint: 2,
      loggingSteps: 1,
      evalSteps: 2,
      batchSize: 1,
    });
  });

  it('runs the same recipe written as JSON', async () => {
    const json = join(dir, 'llama3_badam_sft.json');
    await writeFile(json, JSON.stringify(parseYaml(await readFile(recipe, 'utf8'))));
    const run = capture();
    const code = await runCommand(
      [
        ...['train', json, '--model_name_or_path', modelDir, '--dataset_dir', dataDir],
        ...['--output_dir', join(dir, 'recipe-json'), '--template', 'default', '--cutoff_len', '128'],
        ...['--max_samples', '20', '--val_size', '4', '--max_steps', '1', '--badam_verbose', '1'],
      ],
      run.io,
    );
    expect(code, run.err.join('\n')).toBe(0);
    expect(run.out.join('\n')).toContain('16 training and 4 validation examples (sft, template default');
  });
});

describe("chat templates from the model's tokenizer_config.json", () => {
  // ChatML as Qwen2 ships it: with no built-in template named, runs and chat render the model's own.
  const CHATML =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

  it('trains with the Jinja chat_template when --template is not given, records it; chat and training use it from the run and its checkpoint', async () => {
    const model = join(dir, 'chatml-llama');
    await mkdir(model, { recursive: true });
    for (const file of ['config.json', 'model.safetensors', 'tokenizer.json'])
      await writeFile(join(model, file), await readFile(join(modelDir, file)));
    const config = await readJson(join(modelDir, 'tokenizer_config.json'));
    await writeFile(
      join(model, 'tokenizer_config.json'),
      JSON.stringify({ ...config, chat_template: CHATML }),
    );
    const data = join(dir, 'tasks.json');
    const records = generatedInstructions(12, 0, 3).train.map(({ instruction, input, output }) => ({
      instruction,
      input,
      output,
    }));
    await writeFile(data, JSON.stringify(records));
    const out = join(dir, 'chatml-run');
    const run = capture();
    const argv = [
      '--model_name_or_path',
      model,
      '--dataset',
      data,
      '--max_steps',
      '2',
      '--save_steps',
      '1',
      '--output_dir',
      out,
    ];
    expect(await runCommand(argv, run.io), run.err.join('\n')).toBe(0);
    expect(run.out.join('\n')).toContain('template chat_template,');
    expect(await readJson(join(out, 'badam_llama.json'))).toMatchObject({ template: 'chat_template' });
    // The output directory and its checkpoint are model folders with the template: chat talks to both.
    const query = ['--query', 'Say hi', '--max_new_tokens', '2'];
    for (const folder of [out, join(out, 'checkpoint-1')]) {
      const chat = capture();
      expect(
        await runCommand(['chat', '--model_name_or_path', folder, ...query], chat.io),
        chat.err.join('\n'),
      ).toBe(0);
      expect(chat.out).toHaveLength(1);
    }
    // A run from the checkpoint finds the model's template there too.
    const again = capture();
    const fromCheckpoint = [
      '--model_name_or_path',
      join(out, 'checkpoint-1'),
      '--dataset',
      data,
      '--max_steps',
      '1',
    ];
    expect(await runCommand([...fromCheckpoint, '--output_dir', join(dir, 'chatml-again')], again.io)).toBe(
      0,
    );
    expect(again.out.join('\n')).toContain('template chat_template,');
    expect(again.err.join('\n')).not.toContain('not used');
    // --template still picks a built-in one by name.
    const named = capture();
    const out2 = join(dir, 'chatml-named');
    expect(await runCommand([...argv.slice(0, -1), out2, '--template', 'alpaca'], named.io)).toBe(0);
    expect(named.out.join('\n')).toContain('template alpaca,');
  });
});
