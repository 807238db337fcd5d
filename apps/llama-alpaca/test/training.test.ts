import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ByteTokenizer } from '@badam/data';
import { SafetensorsFile } from '@badam/safetensors';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  generatedInstructions,
  runCommand,
  runComparison,
  runEmbeddedDefault,
  trainOptionsFrom,
} from '../src/index.js';
import { writeTinyLlamaDir } from './fixtures/tiny-llama-dir.js';

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

async function tensorsOf(path: string): Promise<Map<string, Float32Array>> {
  const file = await SafetensorsFile.open(path);
  try {
    const result = new Map<string, Float32Array>();
    for (const name of file.names()) result.set(name, await file.readFloat32(name));
    return result;
  } finally {
    await file.close();
  }
}

async function jsonLines(path: string): Promise<Array<Record<string, unknown>>> {
  return (await readFile(path, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

let dir: string;
let modelDir: string;
let dataDir: string;

// A Hugging Face model directory as a user would bring one: config.json, model.safetensors, tokenizer.json.
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'badam-llama-train-'));
  modelDir = join(dir, 'tiny-llama');
  await writeTinyLlamaDir(modelDir, 7);
  // An Alpaca-format dataset registered in dataset_info.json, as LLaMA-Factory reads it.
  dataDir = join(dir, 'data');
  await mkdir(dataDir, { recursive: true });
  const records = generatedInstructions(40, 0, 3).train.map(({ instruction, input, output }) => ({
    instruction,
    input,
    output,
  }));
  await writeFile(join(dataDir, 'tasks.json'), JSON.stringify(records));
  await writeFile(join(dataDir, 'dataset_info.json'), JSON.stringify({ tasks: { file_name: 'tasks.json' } }));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const common = (outputDir: string) => [
  '--model_name_or_path',
  modelDir,
  '--dataset',
  'tasks',
  '--dataset_dir',
  dataDir,
  '--template',
  'alpaca',
  '--cutoff_len',
  '64',
  '--per_device_train_batch_size',
  '4',
  '--learning_rate',
  '1e-3',
  '--lr_scheduler_type',
  'cosine',
  '--logging_steps',
  '1',
  '--output_dir',
  outputDir,
];

describe('badam-llama on a Hugging Face model directory', () => {
  it('fine-tunes with BAdam: checkpoints, logs, plot, model, predictions; resuming reproduces the run bit for bit', async () => {
    const out = join(dir, 'block');
    const run = capture();
    // --do_predict generates on tfjs (auto would pick it), and the resume below must run where this run did
    const argv = [
      ...common(out),
      '--backend',
      'tfjs',
      '--max_steps',
      '6',
      '--switch_block_every',
      '2',
      '--save_steps',
      '3',
      '--val_size',
      '8',
      '--do_predict',
      '--max_new_tokens',
      '4',
      '--plot_loss',
    ];
    expect(await runCommand(argv, run.io), run.err.join('\n')).toBe(0);

    for (const file of [
      'config.json',
      'model.safetensors',
      'tokenizer.json',
      'trainer_log.jsonl',
      'training_loss.png',
      'all_results.json',
      'generated_predictions.jsonl',
      'badam_llama.json',
    ]) {
      expect(existsSync(join(out, file)), file).toBe(true);
    }
    expect((await readdir(out)).filter((e) => e.startsWith('checkpoint-')).sort()).toEqual([
      'checkpoint-3',
      'checkpoint-6',
    ]);
    expect((await readFile(join(out, 'training_loss.png'))).subarray(1, 4).toString()).toBe('PNG');
    const log = await jsonLines(join(out, 'trainer_log.jsonl'));
    expect(log.filter((l) => typeof l.loss === 'number').map((l) => l.current_steps)).toEqual([
      1, 2, 3, 4, 5, 6,
    ]);
    const results = JSON.parse(await readFile(join(out, 'all_results.json'), 'utf8')) as Record<
      string,
      number | string
    >;
    expect(results.finetuning_type).toBe('block');
    expect(Number.isFinite(results.train_loss)).toBe(true);
    expect(results.train_steps).toBe(6);
    // Blocks of the 2-layer model are its layers: each holds 9 tensors (4 attention, 3 MLP, 2 norms).
    expect(results.trained_parameters_per_block).toBe(9);
    const predictions = await jsonLines(join(out, 'generated_predictions.jsonl'));
    expect(predictions).toHaveLength(8);
    expect(Object.keys(predictions[0]!).sort()).toEqual(['label', 'predict', 'prompt']);
    expect(run.out.join('\n')).toMatch(/switching to block 1 \(model\.layers\.1\.\)/);
    const finished = await tensorsOf(join(out, 'model.safetensors'));

    // Resume from step 3 in the same directory: the final weights match the uninterrupted run exactly.
    const resumed = capture();
    const resumeArgv = [
      ...common(out),
      '--backend',
      'tfjs',
      '--max_steps',
      '6',
      '--switch_block_every',
      '2',
      '--save_steps',
      '3',
      '--val_size',
      '8',
      '--resume_from_checkpoint',
      join(out, 'checkpoint-3'),
    ];
    expect(await runCommand(resumeArgv, resumed.io), resumed.err.join('\n')).toBe(0);
    expect(resumed.out.join('\n')).toContain('resuming from');
    const again = await tensorsOf(join(out, 'model.safetensors'));
    expect([...again.keys()].sort()).toEqual([...finished.keys()].sort());
    for (const [name, data] of finished) expect(again.get(name), name).toEqual(data);

    // chat answers from the directory the run wrote, with the template it recorded.
    const chat = capture();
    expect(
      await runCommand(
        ['chat', '--model_name_or_path', out, '--query', 'Copy the letters.', '--max_new_tokens', '3'],
        chat.io,
      ),
      chat.err.join('\n'),
    ).toBe(0);
    expect(chat.out.join('')).not.toBe('');
  });

  it.each([
    ['full', []],
    ['lora', ['--lora_rank', '4']],
    ['sparse', ['--update_ratio', '0.25', '--switch_block_every', '2']],
  ] as const)('trains with --finetuning_type %s and saves what that type produces', async (type, extra) => {
    const out = join(dir, type);
    const run = capture();
    expect(
      await runCommand([...common(out), '--finetuning_type', type, '--max_steps', '3', ...extra], run.io),
      run.err.join('\n'),
    ).toBe(0);
    const results = JSON.parse(await readFile(join(out, 'all_results.json'), 'utf8')) as Record<
      string,
      number
    >;
    expect(results.train_steps).toBe(3);
    expect(Number.isFinite(results.train_loss)).toBe(true);
    if (type === 'lora') {
      expect(existsSync(join(out, 'adapter_model.safetensors'))).toBe(true);
      const config = JSON.parse(await readFile(join(out, 'adapter_config.json'), 'utf8')) as {
        r: number;
        peft_type: string;
      };
      expect(config).toMatchObject({ r: 4, peft_type: 'LORA' });
    } else {
      const before = await tensorsOf(join(modelDir, 'model.safetensors'));
      const after = await tensorsOf(join(out, 'model.safetensors'));
      const changed = [...before].filter(
        ([name, data]) => !after.get(name)!.every((v, i) => v === data[i]),
      ).length;
      expect(changed).toBeGreaterThan(0);
    }
  });
});

describe('the embedded default', () => {
  it('pretrains, instruction-tunes with BAdam and reports exact match before and after (shrunk)', async () => {
    const out = join(dir, 'embedded');
    const { options, embedded } = trainOptionsFrom([
      '--max_steps',
      '12',
      '--switch_block_every',
      '3',
      '--eval_steps',
      '6',
      '--logging_steps',
      '2',
      '--output_dir',
      out,
    ]);
    expect(embedded).toBe(true);
    const run = capture();
    const result = await runEmbeddedDefault(
      options,
      { log: run.io.log, warn: run.io.warn },
      { pretrainSteps: 4, trainExamples: 64, evalExamples: 8 },
    );
    const saved = JSON.parse(await readFile(join(out, 'embedded_results.json'), 'utf8')) as {
      before: Record<string, number>;
      after: Record<string, number>;
    };
    // "all" is the exact match over the 8 held-out instructions: each task's score weighted by its count,
    // a multiple of 1/8, and the value written to the results files.
    const held = generatedInstructions(64, 8, options.seed).eval;
    for (const scores of [result.before, result.after]) {
      const weighted = Object.entries(scores)
        .filter(([task]) => task !== 'all')
        .reduce((sum, [task, score]) => sum + score * held.filter((e) => e.task === task).length, 0);
      expect(scores.all).toBeCloseTo(weighted / 8, 12);
      expect(Number.isInteger(Math.round(scores.all! * 8 * 1e9) / 1e9)).toBe(true);
    }
    expect(saved).toMatchObject({ before: result.before, after: result.after });
    const results = JSON.parse(await readFile(join(out, 'all_results.json'), 'utf8')) as Record<
      string,
      number
    >;
    expect([results.exact_match_before, results.exact_match_after]).toEqual([
      result.before.all,
      result.after.all,
    ]);
    expect(Object.keys(saved.after).sort()).toEqual(['add', 'all', 'copy', 'reverse', 'sort']);
    const log = await jsonLines(join(out, 'trainer_log.jsonl'));
    const losses = log.filter((l) => typeof l.loss === 'number').map((l) => l.loss as number);
    expect(losses.at(-1)!).toBeLessThan(losses[0]!);
    expect(log.some((l) => typeof l.eval_loss === 'number')).toBe(true);
    expect(existsSync(join(out, 'training_loss.png'))).toBe(true);
    expect(run.out.join('\n')).toContain(
      'exact match on held-out instructions, before -> after block fine-tuning',
    );
  });

  it('warns when a learning rate of 1e6 saturates the model into a uniform one, though the loss stays finite', async () => {
    const out = join(dir, 'lr-1e6');
    const { options } = trainOptionsFrom([
      ...['--learning_rate', '1e6', '--max_steps', '8', '--logging_steps', '1', '--output_dir', out],
    ]);
    const run = capture();
    await runEmbeddedDefault(
      options,
      { log: run.io.log, warn: run.io.warn },
      { pretrainSteps: 4, trainExamples: 64, evalExamples: 8 },
    );
    const log = await jsonLines(join(out, 'trainer_log.jsonl'));
    const last = log.filter((l) => typeof l.loss === 'number').at(-1)!;
    expect(last.loss as number).toBeCloseTo(Math.log(new ByteTokenizer().vocabSize), 4); // a uniform model
    expect(run.err.join('\n')).toMatch(
      /BAdam: gradient norm 0 for 3 steps in a row at loss 5\.5568 \(step \d\): training has stalled/,
    );
  });

  it('the validation split is disjoint from the training and test splits, which it leaves unchanged', () => {
    const key = (e: { instruction: string; input: string }) => `${e.instruction}|${e.input}`;
    const plain = generatedInstructions(200, 40, 7);
    const split = generatedInstructions(200, 40, 7, 40);
    expect(split.eval).toEqual(plain.eval);
    expect(plain.validation).toEqual([]);
    const seen = new Set([...split.train, ...split.eval].map(key));
    expect(split.validation).toHaveLength(40);
    expect(split.validation.filter((e) => seen.has(key(e)))).toEqual([]);
    expect(new Set(split.validation.map((e) => e.task)).size).toBe(4);
  });

  it('compare runs block, full, lora and sparse on 2 seeds from one start: mean ± sd table, band plot, every run in the JSON (shrunk)', async () => {
    const out = join(dir, 'compare');
    const { options } = trainOptionsFrom([
      ...['--max_steps', '4', '--switch_block_every', '1', '--eval_steps', '4'],
      ...['--output_dir', out, '--logging_steps', '1'],
    ]);
    const run = capture();
    const report = await runComparison(
      options,
      { seeds: [42, 43], learningRates: [2e-3], chooseRate: false },
      { log: run.io.log, warn: run.io.warn },
      { pretrainSteps: 2, trainExamples: 32, evalExamples: 4 },
    );
    expect(report.rows.map((r) => r.method)).toEqual(['block', 'full', 'lora', 'sparse']);
    expect(report.runs.map((r) => `${r.method}@${r.seed}`).sort()).toEqual(
      ['block', 'full', 'lora', 'sparse'].flatMap((m) => [`${m}@42`, `${m}@43`]).sort(),
    );
    for (const r of report.rows) {
      for (const s of [r.test.eval_loss!, r.test.exact_match!, r.seconds, r.peakMemoryBytes])
        expect([s.mean, s.sd, s.min, s.max].every(Number.isFinite) && s.n === 2).toBe(true);
    }
    // The seed changes the data order: two seeds of one method train differently.
    const block = report.runs.filter((r) => r.method === 'block');
    expect(block[0]!.test.eval_loss).not.toBe(block[1]!.test.eval_loss);
    // BAdam holds Adam state for one layer, full Adam for every parameter.
    const byMethod = Object.fromEntries(report.rows.map((r) => [r.method, r]));
    expect(byMethod.block!.estimatedOptimizerBytes.mean).toBeLessThan(
      byMethod.full!.estimatedOptimizerBytes.mean / 3,
    );
    const table = (await readFile(join(out, 'compare_table.md'), 'utf8')).trim().split('\n');
    expect(table[0]).toBe('held-out split; mean ± sample sd over seeds 42, 43');
    expect(table.slice(2)).toHaveLength(6); // header, rule, four methods
    expect(table[2]).toBe(
      '| method | learning rate | peak memory measured (MB) | estimated total (MB) | estimated grads + optimizer (MB) | time (s) | eval loss | exact match |',
    );
    for (const line of table.slice(4)) {
      const cells = line
        .split('|')
        .slice(1, -1)
        .map((c) => c.trim());
      expect(cells).toHaveLength(8);
      expect(cells[6]).toMatch(/^\d+\.\d{4} ± \d+\.\d{4}$/);
      expect(cells[7]).toMatch(/^\d+\.\d% ± \d+\.\d%$/);
      expect(cells.slice(2, 5).every((c) => Number.isFinite(Number(c)))).toBe(true);
    }
    const json = JSON.parse(await readFile(join(out, 'compare_results.json'), 'utf8'));
    expect(json.runs).toHaveLength(8);
    expect(json.band).toBe('min-max over seeds');
    expect(existsSync(join(out, 'compare_loss.png'))).toBe(true);
  });

  it('compare --learning_rates chooses each rate on a validation split and reports the test split only (shrunk)', async () => {
    const out = join(dir, 'compare-rates');
    const run = capture();
    const { options } = trainOptionsFrom([
      ...['--max_steps', '3', '--switch_block_every', '1', '--eval_steps', '3'],
      ...['--output_dir', out, '--logging_steps', '1'],
    ]);
    const report = await runComparison(
      options,
      { seeds: [42, 43], learningRates: [1e-3, 5e-3], chooseRate: true },
      { log: run.io.log, warn: run.io.warn },
      { pretrainSteps: 2, trainExamples: 32, evalExamples: 4, validationExamples: 4 },
    );
    expect(report.runs).toHaveLength(16);
    for (const r of report.runs) expect(r.validation).toBeDefined();
    for (const row of report.rows) {
      const scored = report.selection.filter((s) => s.method === row.method);
      expect(scored.map((s) => s.learningRate)).toEqual([1e-3, 5e-3]);
      const best = scored.reduce((a, b) =>
        b.validation.eval_loss!.mean < a.validation.eval_loss!.mean ? b : a,
      );
      expect(row.learningRate).toBe(best.learningRate);
      expect(scored.filter((s) => s.chosen).map((s) => s.learningRate)).toEqual([row.learningRate]);
      // The reported numbers are the test split's at the chosen rate, not the validation split's.
      const tests = report.runs
        .filter((r) => r.method === row.method && r.learningRate === row.learningRate)
        .map((r) => r.test.eval_loss!);
      expect(row.test.eval_loss!.mean).toBeCloseTo((tests[0]! + tests[1]!) / 2, 10);
      expect(row.test.eval_loss!.mean).not.toBe(best.validation.eval_loss!.mean);
    }
    const table = await readFile(join(out, 'compare_table.md'), 'utf8');
    expect(table).toContain(
      "test split; mean ± sample sd over seeds 42, 43; each method's rate chosen by mean validation eval loss among 1e-3, 5e-3",
    );
    expect(table).toMatch(/\| block \| (1e-3|5e-3) \(chosen\) \|/);
    expect(table).toContain('validation split (the rate is chosen here; these numbers are not the result)');
  });
});

const sharedData = resolve(
  process.env.BADAM_SHARED_DATA ?? join(dirname(fileURLToPath(import.meta.url)), '../../../../shared/data'),
);
const alpacaDemo = join(sharedData, 'alpaca', 'alpaca_en_demo.json');

describe.skipIf(!existsSync(alpacaDemo))('real Alpaca data (../shared/data)', () => {
  it('fine-tunes the built-in tiny Llama on alpaca_en_demo.json for a few steps', async () => {
    const out = join(dir, 'alpaca');
    const run = capture();
    const argv = [
      '--dataset',
      alpacaDemo,
      '--cutoff_len',
      '128',
      '--max_steps',
      '3',
      '--learning_rate',
      '1e-3',
      '--val_size',
      '16',
      '--output_dir',
      out,
    ];
    expect(await runCommand(argv, run.io), run.err.join('\n')).toBe(0);
    expect(run.out.join('\n')).toMatch(
      /badam-llama: 983 training and 16 validation examples|training and 16 validation examples/,
    );
    const results = JSON.parse(await readFile(join(out, 'all_results.json'), 'utf8')) as Record<
      string,
      number
    >;
    expect(Number.isFinite(results.eval_loss)).toBe(true);
  });
});
