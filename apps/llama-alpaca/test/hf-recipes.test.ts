import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SafetensorsFile } from '@badam/safetensors';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generatedInstructions, runCommand, trainOptionsFrom } from '../src/index.js';
import { writeTinyLlamaDir } from './fixtures/tiny-llama-dir.js';

// Recipes and flags LLaMA-Factory and Hugging Face Trainer users bring, run end to end on a tiny model
// folder: the current first BAdam example as written, the Trainer's saving / evaluation / best-model
// arguments, and the 16-bit checkpoints of the cuda backend (on its CPU device).

const here = dirname(fileURLToPath(import.meta.url));
const sharedData = resolve(process.env.BADAM_SHARED_DATA ?? join(here, '../../../../shared/data'));
const alpacaDemo = join(sharedData, 'alpaca', 'alpaca_en_demo.json');

/**
 * LLaMA-Factory's examples/extras/badam/llama3_full_sft.yaml (its first BAdam example) key for key, the
 * model and the data directory pointed at local ones.
 */
const FIRST_BADAM_EXAMPLE = (model: string, dataDir: string, out: string) => `### model
model_name_or_path: ${model}
trust_remote_code: true

### method
stage: sft
do_train: true
finetuning_type: full
use_badam: true
badam_mode: layer
badam_switch_mode: ascending
badam_switch_interval: 50
badam_verbose: 2
# deepspeed: examples/deepspeed/ds_z3_config.json

### dataset
dataset: identity,alpaca_en_demo
dataset_dir: ${dataDir}
template: llama3
cutoff_len: 2048
max_samples: 1000
overwrite_cache: true
preprocessing_num_workers: 16
dataloader_num_workers: 4

### output
output_dir: ${out}
logging_steps: 10
save_steps: 500
plot_loss: true
overwrite_output_dir: true
save_only_model: false
report_to: none  # choices: [none, wandb, tensorboard, swanlab, mlflow]

### train
per_device_train_batch_size: 1
gradient_accumulation_steps: 8
learning_rate: 1.0e-5
num_train_epochs: 3.0
lr_scheduler_type: cosine
warmup_ratio: 0.1

### eval
# val_size: 0.1
# per_device_eval_batch_size: 1
# eval_strategy: steps
# eval_steps: 500
`;

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { log: (m: string) => out.push(m), warn: (m: string) => err.push(m) }, out, err };
}

async function readJson(path: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
}

async function checkpoints(out: string): Promise<string[]> {
  return (await readdir(out)).filter((f) => /^checkpoint-\d+$/.test(f)).sort();
}

async function dtypeOf(path: string, name = 'model.embed_tokens.weight'): Promise<string> {
  const file = await SafetensorsFile.open(path);
  try {
    return file.entry(name).dtype;
  } finally {
    await file.close();
  }
}

let dir: string;
let modelDir: string;
let dataDir: string;
let tasks: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'badam-hf-recipes-'));
  modelDir = join(dir, 'tiny-llama');
  await writeTinyLlamaDir(modelDir, 11);
  dataDir = join(dir, 'data');
  await mkdir(dataDir, { recursive: true });
  // LLaMA-Factory's identity.json: who the assistant is, with its placeholders filled in.
  const identity = ['Who are you?', 'What is your name?', 'Who made you?', 'Hello'].map((q) => ({
    instruction: q,
    input: '',
    output: 'I am a tiny Llama, fine-tuned with BAdam.',
  }));
  await writeFile(join(dataDir, 'identity.json'), JSON.stringify(identity));
  tasks = join(dataDir, 'tasks.json');
  await writeFile(
    tasks,
    JSON.stringify(
      generatedInstructions(40, 0, 5).train.map(({ instruction, input, output }) => ({
        instruction,
        input,
        output,
      })),
    ),
  );
  if (existsSync(alpacaDemo)) await symlink(alpacaDemo, join(dataDir, 'alpaca_en_demo.json'));
  else await symlink(tasks, join(dataDir, 'alpaca_en_demo.json'));
  await writeFile(
    join(dataDir, 'dataset_info.json'),
    JSON.stringify({
      identity: { file_name: 'identity.json' },
      alpaca_en_demo: { file_name: 'alpaca_en_demo.json' },
      tasks: { file_name: 'tasks.json' },
    }),
  );
}, 120_000);
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("LLaMA-Factory's first BAdam example", () => {
  it('runs as written (examples/extras/badam/llama3_full_sft.yaml), only the model-bound values and the length overridden', async () => {
    const out = join(dir, 'first-example');
    const recipe = join(dir, 'llama3_full_sft.yaml');
    await writeFile(recipe, FIRST_BADAM_EXAMPLE(modelDir, dataDir, out));
    const run = capture();
    // The tiny model has a byte tokenizer (no Llama 3 tokens) and 128 positions; a test runs a few steps.
    const overrides = ['--template', 'default', '--cutoff_len', '128', '--max_samples', '16'];
    const short = ['--max_steps', '3', '--gradient_accumulation_steps', '2', '--save_steps', '2'];
    const code = await runCommand(['train', recipe, ...overrides, ...short], run.io);
    expect(code, run.err.join('\n')).toBe(0);
    const err = run.err.join('\n');
    for (const ignored of [
      'trust_remote_code',
      'overwrite_cache',
      'preprocessing_num_workers',
      'dataloader_num_workers',
    ])
      expect(err).toContain(`--${ignored} is ignored: `);
    // save_only_model false and report_to none are what the run does anyway: nothing to say about them.
    expect(err).not.toMatch(/save_only_model|report_to/);
    const text = run.out.join('\n');
    expect(text).toContain('20 training and 0 validation examples (sft, template default');
    expect(text).toContain('BAdam: starting on block 0');
    // Hugging Face saves every save_steps and at the last step; all kept (save_total_limit unset).
    expect(await checkpoints(out)).toEqual(['checkpoint-2', 'checkpoint-3']);
    expect(existsSync(join(out, 'checkpoint-2', 'optimizer.safetensors'))).toBe(true);
    expect(existsSync(join(out, 'runs'))).toBe(false);
    const tokenizerConfig = await readJson(join(out, 'tokenizer_config.json'));
    expect(tokenizerConfig.chat_template).toEqual(expect.stringContaining("'Human: '"));
  });
});

describe("Hugging Face Trainer's saving arguments", () => {
  const base = () => ['--model_name_or_path', modelDir, '--dataset', tasks, '--template', 'default'];

  it('--save_strategy epoch saves at each epoch end; --save_total_limit keeps the newest; --save_only_model checkpoints cannot be resumed from', async () => {
    const out = join(dir, 'epochs');
    const run = capture();
    const argv = [
      ...base(),
      ...['--max_samples', '8', '--per_device_train_batch_size', '4', '--num_train_epochs', '3'],
      ...['--save_strategy', 'epoch', '--save_total_limit', '2', '--save_only_model', '--output_dir', out],
    ];
    expect(await runCommand(argv, run.io), run.err.join('\n')).toBe(0);
    // 8 examples in batches of 4: 2 steps an epoch, 6 steps in all; the newest two of 2, 4, 6 are kept.
    expect(await checkpoints(out)).toEqual(['checkpoint-4', 'checkpoint-6']);
    const files = await readdir(join(out, 'checkpoint-6'));
    expect(files).toContain('model.safetensors');
    expect(files).toContain('trainer_state.json');
    expect(files).not.toContain('optimizer.safetensors');
    const resume = capture();
    const again = [...argv, '--resume_from_checkpoint', join(out, 'checkpoint-4')];
    expect(await runCommand(again, resume.io)).toBe(1);
    expect(resume.err.join('\n')).toContain(
      'was saved with --save_only_model: it holds the model but no optimizer state',
    );
    // The checkpoint is a model folder all the same.
    const chat = capture();
    const query = ['--query', 'Hi', '--max_new_tokens', '2'];
    expect(
      await runCommand(['chat', '--model_name_or_path', join(out, 'checkpoint-6'), ...query], chat.io),
    ).toBe(0);
  });

  it('--load_best_model_at_end keeps and loads the checkpoint of the best --metric_for_best_model, as trainer_state.json records', async () => {
    const out = join(dir, 'best');
    const run = capture();
    const argv = [
      ...base(),
      ...['--max_samples', '24', '--val_size', '8', '--max_steps', '6', '--learning_rate', '3e-2'],
      ...['--eval_strategy', 'steps', '--eval_steps', '2', '--save_steps', '2', '--save_total_limit', '1'],
      ...['--load_best_model_at_end', '--metric_for_best_model', 'accuracy', '--output_dir', out],
    ];
    expect(await runCommand(argv, run.io), run.err.join('\n')).toBe(0);
    const state = await readJson(join(out, 'trainer_state.json'));
    const evals = (state.log_history as Array<Record<string, number>>).filter(
      (e) => e.eval_accuracy !== undefined && e.step! % 2 === 0,
    );
    const best = evals.reduce((a, b) => (b.eval_accuracy! > a.eval_accuracy! ? b : a));
    expect(state.best_metric).toBe(best.eval_accuracy);
    expect(state.best_global_step).toBe(best.step);
    expect(state.best_model_checkpoint).toBe(join(out, `checkpoint-${best.step}`));
    // The newest checkpoint (save_total_limit 1) and the best one stay.
    expect(await checkpoints(out)).toEqual([...new Set([`checkpoint-${best.step}`, 'checkpoint-6'])].sort());
    expect(run.out.join('\n')).toContain(`loaded the best model, ${join(out, `checkpoint-${best.step}`)}`);
    // The saved model is the best checkpoint's weights.
    const saved = await SafetensorsFile.open(join(out, 'model.safetensors'));
    const kept = await SafetensorsFile.open(join(out, `checkpoint-${best.step}`, 'model.safetensors'));
    try {
      const name = 'model.layers.1.mlp.down_proj.weight';
      expect(await saved.readFloat32(name)).toEqual(await kept.readFloat32(name));
    } finally {
      await saved.close();
      await kept.close();
    }
  });

  it.each([
    [['--load_best_model_at_end', '--val_size', '4', '--eval_steps', '2'], 'but this run saves none'],
    [
      ['--load_best_model_at_end', '--val_size', '4', '--eval_steps', '2', '--save_steps', '3'],
      'make --save_steps a multiple of --eval_steps',
    ],
    [['--adam_beta1', '1'], '--adam_beta1 must be in [0, 1), got 1'],
    [['--bf16', '--fp16'], '--bf16 and --fp16 both choose the weights dtype'],
    [['--eval_dataset', 'tasks', '--val_size', '0.1'], 'both give evaluation data'],
  ])('refuses %j before training', async (flags, message) => {
    const run = capture();
    const argv = [...base(), '--dataset_dir', dataDir, '--max_steps', '4', ...flags];
    expect(await runCommand([...argv, '--output_dir', join(dir, 'refused')], run.io)).toBe(2);
    expect(run.err.join('\n')).toContain(message);
  });

  it('takes Adam betas and epsilon, the data order seed, and accepts --optim with a line', () => {
    const { options, notes } = trainOptionsFrom([
      ...base(),
      ...['--adam_beta1', '0.8', '--adam_beta2', '0.95', '--adam_epsilon', '1e-6', '--data_seed', '7'],
      ...['--optim', 'adamw_torch', '--predict_with_generate'],
    ]);
    expect(options.adamBetas).toEqual([0.8, 0.95]);
    expect(options.adamEpsilon).toBe(1e-6);
    expect(options.dataSeed).toBe(7);
    expect(trainOptionsFrom(base()).options.dataSeed).toBeUndefined();
    expect(options.seed).toBe(42);
    expect(notes.join('\n')).toContain('--optim is ignored: the base optimizer is always AdamW');
    expect(notes.join('\n')).toContain('--predict_with_generate is ignored');
    const sgd = trainOptionsFrom([...base(), '--optim', 'sgd']).notes.join('\n');
    expect(sgd).toContain('--optim sgd is ignored: not AdamW');
  });

  it('ignores, with a line, the --badam_* settings LLaMA-Factory ignores in the other --badam_mode', () => {
    const layer = trainOptionsFrom([
      ...[
        '--use_badam',
        '--badam_mode',
        'layer',
        '--badam_update_ratio',
        '0.2',
        '--badam_mask_mode',
        'scatter',
      ],
    ]);
    expect(layer.options.method).toBe('block');
    expect(layer.notes.join('\n')).toMatch(/--badam_update_ratio is ignored: --badam_mode layer/);
    expect(layer.notes.join('\n')).toMatch(/--badam_mask_mode is ignored: --badam_mode layer/);
    const ratio = trainOptionsFrom(['--use_badam', '--badam_mode', 'ratio', '--badam_start_block', '2']);
    expect(ratio.options.method).toBe('sparse');
    expect(ratio.options.startBlock).toBeUndefined();
    expect(ratio.notes.join('\n')).toMatch(/--badam_start_block is ignored: --badam_mode ratio/);
  });

  it('--data_seed changes the order of the training data only', async () => {
    const first = async (dataSeed: string, name: string) => {
      const out = join(dir, name);
      const run = capture();
      const argv = [...base(), '--max_samples', '24', '--val_size', '4', '--max_steps', '1'];
      expect(await runCommand([...argv, '--data_seed', dataSeed, '--output_dir', out], run.io)).toBe(0);
      const line = JSON.parse((await readFile(join(out, 'trainer_log.jsonl'), 'utf8')).split('\n')[0]!);
      return { loss: line.loss as number, text: run.out.join('\n') };
    };
    const [a, b, again] = [
      await first('1', 'seed-a'),
      await first('2', 'seed-b'),
      await first('1', 'seed-c'),
    ];
    expect(a.loss).not.toBe(b.loss);
    expect(again.loss).toBe(a.loss);
    expect(a.text).toContain('20 training and 4 validation examples');
  });

  it('--report_to tensorboard writes an event file in --logging_dir (default <output_dir>/runs/<date>_<host>) with the training and eval scalars', async () => {
    const out = join(dir, 'tensorboard');
    const run = capture();
    const argv = [
      ...base(),
      '--max_samples',
      '12',
      '--val_size',
      '4',
      '--max_steps',
      '2',
      '--eval_steps',
      '1',
    ];
    expect(
      await runCommand(
        [...argv, '--logging_steps', '1', '--report_to', 'tensorboard', '--output_dir', out],
        run.io,
      ),
      run.err.join('\n'),
    ).toBe(0);
    const [runDir] = await readdir(join(out, 'runs'));
    expect(runDir).toMatch(/^[A-Z][a-z]{2}\d{2}_\d{2}-\d{2}-\d{2}_/);
    const [events] = await readdir(join(out, 'runs', runDir!));
    const bytes = await readFile(join(out, 'runs', runDir!, events!), 'latin1');
    for (const tag of [
      'train/loss',
      'train/learning_rate',
      'train/grad_norm',
      'train/tokens_per_second',
      'train/memory_bytes',
      'train/active_block',
      'eval/loss',
    ])
      expect(bytes).toContain(tag);
    expect(run.out.join('\n')).toContain('TensorBoard event files in');
    const other = capture();
    const logDir = join(dir, 'tb-logs');
    const more = [
      '--report_to',
      'tensorboard,wandb',
      '--logging_dir',
      logDir,
      '--output_dir',
      join(dir, 'tb2'),
    ];
    expect(await runCommand([...argv, ...more], other.io)).toBe(0);
    expect((await readdir(logDir))[0]).toMatch(/^events\.out\.tfevents\./);
    expect(other.err.join('\n')).toContain(
      '--report_to wandb is ignored: only tensorboard is an integration here',
    );
  });

  it('trains unless evaluation or prediction alone is asked of a model: the embedded default always trains', () => {
    expect(trainOptionsFrom(['--do_predict', '--val_size', '0.1']).options.doTrain).toBe(true);
    expect(trainOptionsFrom([...base(), '--do_predict', '--val_size', '0.1']).options.doTrain).toBe(true);
    const predict = trainOptionsFrom([...base().slice(0, 2), '--do_predict', '--eval_dataset', 'tasks']);
    expect(predict.options.doTrain).toBe(false);
    expect(() => trainOptionsFrom(['--do_train', 'false', '--do_eval', '--val_size', '0.1'])).toThrow(
      '--do_train false evaluates or predicts with a model: give --model_name_or_path',
    );
  });

  it('--fp16 on tfjs says it is ignored and why', () => {
    const { notes, options } = trainOptionsFrom([...base(), '--fp16', '--backend', 'tfjs']);
    expect(options.fp16).toBe(true);
    expect(notes.join('\n')).toContain('--fp16 is ignored on tfjs: TensorFlow.js has no 16-bit float');
  });

  it.each([
    ['--bf16', 'BF16', 'bfloat16'],
    ['--fp16', 'F16', 'float16'],
  ])(
    '%s on --backend cuda keeps checkpoints and the model in the weights dtype, each loadable by chat',
    async (flag, stored, named) => {
      const out = join(dir, `cuda${flag}`);
      const run = capture();
      const argv = [...base(), '--max_samples', '8', '--max_steps', '2', '--save_steps', '1'];
      const cuda = ['--backend', 'cuda', '--cuda_device', 'cpu', flag, '--output_dir', out];
      expect(await runCommand([...argv, ...cuda], run.io), run.err.join('\n')).toBe(0);
      for (const folder of [join(out, 'checkpoint-1'), join(out, 'checkpoint-2'), out]) {
        expect(await dtypeOf(join(folder, 'model.safetensors'))).toBe(stored);
        expect((await readJson(join(folder, 'config.json'))).torch_dtype).toBe(named);
        const chat = capture();
        const query = ['--query', 'Hi', '--max_new_tokens', '2'];
        expect(await runCommand(['chat', '--model_name_or_path', folder, ...query], chat.io)).toBe(0);
      }
      // Resume from a 16-bit checkpoint continues the run.
      const resumed = capture();
      const more = [...argv, ...cuda, '--resume_from_checkpoint', join(out, 'checkpoint-1')];
      expect(await runCommand(more, resumed.io), resumed.err.join('\n')).toBe(0);
    },
  );
});
