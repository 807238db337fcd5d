import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ByteTokenizer } from '@badam/data';
import { EncoderClassifier, encoderConfigFromHf, saveEncoder } from '@badam/models';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  generatedPairTask,
  ROBERTA_FLAGS,
  robertaOptionsFrom,
  runRobertaCommand,
  runRobertaComparison,
  runSuperGlue,
  TINY_ROBERTA_CONFIG,
} from '../src/index.js';

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { log: (m: string) => out.push(m), warn: (m: string) => err.push(m) }, out, err };
}

/** The share of prediction records whose prediction is their label. */
function accuracyOf(records: ReadonlyArray<Record<string, unknown>>): number {
  return records.filter((r) => r.prediction === r.label).length / records.length;
}

async function jsonLines(path: string): Promise<Array<Record<string, unknown>>> {
  return (await readFile(path, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'badam-roberta-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('badam-roberta --version', () => {
  it('prints the package version and exits 0', async () => {
    const out: string[] = [];
    const code = await runRobertaCommand(['--version'], { log: (m) => out.push(m), warn: () => {} });
    expect(code).toBe(0);
    expect(out).toEqual([expect.stringMatching(/^badam-roberta \d+\.\d+\.\d+/)]);
  });
});

describe('badam-roberta flags', () => {
  it.each([
    [
      ['--use_block_optim', '--use_sparse_optim', '--task_name', 'cb'],
      '--use_block_optim and --use_sparse_optim pick different optimizers',
    ],
    [['--use_block_optim', '--lora_rank', '8', '--task_name', 'cb'], 'choose one'],
    [
      ['--task_name', 'cb', '--switch_every', '10'],
      '--switch_every applies to --use_block_optim or --use_sparse_optim',
    ],
    [
      ['--task_name', 'cb', '--use_block_optim', '--switch_every', '0'],
      '--switch_every must be >= 1 or -1, got 0',
    ],
    [['--task_name', 'axb'], 'one of boolq, cb, copa, rte, wic, wsc, multirc, record'],
    [['--hf_pretrained_model_name', 'x'], '--hf_pretrained_model_name needs --task_name'],
    [['--use_blok_optim'], 'did you mean --use_block_optim?'],
    [['--task', 'cb'], 'unknown flag --task; did you mean --task_name?'],
    // RoBERTa trains in one process: torchrun's flag would be silently ignored, so it is not offered.
    [['--task_name', 'cb', '--nproc_per_node', '2'], 'unknown flag --nproc_per_node'],
    [['--learning_rate='], '--learning_rate must be a number >= 0, got "" (the value is empty)'],
  ])('rejects %j saying what to do', async (argv, message) => {
    const { io, err } = capture();
    expect(await runRobertaCommand(argv, io)).toBe(2);
    expect(err.join('\n')).toContain(message);
  });

  it('--help and -h list every flag, each with its LLaMA-Factory / badam-llama name where it has one', async () => {
    for (const argv of [['--help'], ['-h']]) {
      const { io, out } = capture();
      expect(await runRobertaCommand(argv, io)).toBe(0);
      const help = out.join('\n');
      for (const flag of Object.keys(ROBERTA_FLAGS)) expect(help).toMatch(new RegExp(`^  --${flag} `, 'm'));
      expect(help).toMatch(
        /--switch_every .*as LLaMA-Factory --badam_switch_interval, badam-llama --switch_block_every\)/,
      );
      expect(help).toMatch(/--use_block_optim .*as LLaMA-Factory --use_badam/);
      expect(help).toMatch(/--train_batch_size .*as LLaMA-Factory --per_device_train_batch_size\)/);
    }
  });

  it('--backend cuda says what is missing, exits 2 and writes nothing', async () => {
    const out = join(dir, 'cuda');
    const { io, err } = capture();
    expect(await runRobertaCommand(['--backend', 'cuda', '--output_dir', out], io)).toBe(2);
    expect(err.join('\n')).toContain('--backend cuda is not available yet for RoBERTa');
    expect(existsSync(out)).toBe(false);
  });

  it('the embedded default refuses an output directory holding an earlier run (a Llama one, say) before any work', async () => {
    const out = join(dir, 'llama-run');
    await mkdir(join(out, 'checkpoint-800'), { recursive: true });
    await writeFile(join(out, 'config.json'), '{"model_type": "llama"}');
    const { io, err } = capture();
    expect(await runRobertaCommand(['--max_steps', '2', '--output_dir', out], io)).toBe(2);
    expect(err.join('\n')).toContain('holds earlier work (1 checkpoint, config.json)');
    expect(await readFile(join(out, 'config.json'), 'utf8')).toBe('{"model_type": "llama"}');
    expect((await readdir(out)).sort()).toEqual(['checkpoint-800', 'config.json']);
  });

  it('an unlabelled train row is an error naming file and line, not a run on loss 0', async () => {
    const data = join(dir, 'unlabelled');
    await mkdir(join(data, 'cb'), { recursive: true });
    const row = (label?: string) =>
      JSON.stringify({
        premise: 'It rained.',
        hypothesis: 'The street is wet.',
        ...(label ? { label } : {}),
      });
    await writeFile(join(data, 'cb', 'train.jsonl'), `${row('entailment')}\n${row()}\n`);
    await writeFile(join(data, 'cb', 'val.jsonl'), `${row('entailment')}\n`);
    const out = join(dir, 'unlabelled-out');
    const { io, err } = capture();
    expect(
      await runRobertaCommand(
        ['--task_name', 'cb', '--data_dir', data, '--max_steps', '2', '--output_dir', out],
        io,
      ),
    ).toBe(2);
    expect(err.join('\n')).toMatch(/cb\/train\.jsonl line 2 must be a labelled example .*got "no label"/);
    expect(existsSync(join(out, 'trainer_log.jsonl'))).toBe(false);
  });

  it('the embedded default is BAdam with the head in every block, unless another method is chosen', () => {
    expect(robertaOptionsFrom([]).options).toMatchObject({
      method: 'block',
      trainLastLayer: true,
      switchBlockEvery: 25,
      maxSteps: 600,
      learningRate: 3e-3,
    });
    expect(robertaOptionsFrom(['--lora_rank', '4']).options).toMatchObject({
      method: 'lora',
      trainLastLayer: false,
      loraRank: 4,
    });
    expect(robertaOptionsFrom(['--use_sparse_optim']).options).toMatchObject({
      method: 'sparse',
      switchBlockEvery: 25,
    });
    expect(robertaOptionsFrom(['--use_block_optim', 'false']).options.method).toBe('full');
    expect(robertaOptionsFrom(['--task_name', 'cb']).options).toMatchObject({
      method: 'full',
      learningRate: 1e-5,
      outputDir: 'output/roberta-cb-full',
    });
  });
});

describe('badam-roberta runs', () => {
  it('compare (shrunk) on 2 seeds and 2 rates: block, full, lora, sparse, rate chosen on validation, mean ± sd of the test split', async () => {
    const out = join(dir, 'compare');
    const run = capture();
    const { options } = robertaOptionsFrom([
      '--max_steps',
      '3',
      ...['--switch_every', '1', '--eval_every_steps', '3', '--logging_steps', '1', '--output_dir', out],
    ]);
    const report = await runRobertaComparison(
      options,
      { seeds: [42, 43], learningRates: [1e-3, 3e-3], chooseRate: true },
      run.io,
      { trainExamples: 32, evalExamples: 8 },
    );
    expect(report.rows.map((r) => r.method)).toEqual(['block', 'full', 'lora', 'sparse']);
    expect(report.runs).toHaveLength(16);
    for (const r of report.rows) {
      for (const s of [r.test.eval_loss!, r.test.accuracy!, r.seconds, r.peakMemoryBytes])
        expect([s.mean, s.sd, s.min, s.max].every(Number.isFinite) && s.n === 2).toBe(true);
      const chosen = report.selection.filter((s) => s.method === r.method && s.chosen);
      expect(chosen.map((s) => s.learningRate)).toEqual([r.learningRate]);
    }
    const table = (await readFile(join(out, 'compare_table.md'), 'utf8')).trim().split('\n');
    expect(table[0]).toContain('test split; mean ± sample sd over seeds 42, 43');
    expect(table[2]).toBe(
      '| method | learning rate | peak memory measured (MB) | estimated total (MB) | estimated grads + optimizer (MB) | time (s) | eval loss | accuracy |',
    );
    for (const line of table.slice(4, 8)) {
      const cells = line
        .split('|')
        .slice(1, -1)
        .map((c) => c.trim());
      expect(cells).toHaveLength(8);
      expect(cells[6]).toMatch(/^\d+\.\d{4} ± \d+\.\d{4}$/);
      expect(cells[7]).toMatch(/^\d+\.\d% ± \d+\.\d%$/);
    }
    expect(JSON.parse(await readFile(join(out, 'compare_results.json'), 'utf8')).runs).toHaveLength(16);
    expect(existsSync(join(out, 'compare_loss.png'))).toBe(true);
  });

  it('compare refuses a SuperGLUE task and a bad --learning_rates before any work', async () => {
    for (const [argv, message] of [
      [['--task_name', 'cb'], 'compare runs on the embedded task with the built-in tiny RoBERTa'],
      [['--learning_rates', '-1e-3'], '--learning_rates must be numbers > 0 separated by commas'],
      [['--seeds', '0'], '--seeds must be an integer >= 1'],
    ] as const) {
      const out = join(dir, `compare-refused-${argv.join('')}`);
      const { io, err } = capture();
      expect(await runRobertaCommand(['compare', ...argv, '--output_dir', out], io)).toBe(2);
      expect(err.join('\n')).toContain(message);
      expect(existsSync(out)).toBe(false);
    }
  });

  it('embedded default (shrunk): BAdam over layers, logs, plot, predictions, model; resumes from a checkpoint', async () => {
    const out = join(dir, 'embedded');
    const { options } = robertaOptionsFrom([
      '--max_steps',
      '6',
      '--switch_every',
      '2',
      '--eval_every_steps',
      '3',
      '--logging_steps',
      '1',
      '--save_steps',
      '3',
      '--output_dir',
      out,
    ]);
    const run = capture();
    const result = await runSuperGlue(options, run.io, {
      train: generatedPairTask(64, 1),
      validation: generatedPairTask(16, 2),
    });
    const finished = await readFile(join(out, 'model.safetensors'));
    for (const file of [
      'trainer_log.jsonl',
      'training_loss.png',
      'val_predictions.jsonl',
      'all_results.json',
      'config.json',
      'model.safetensors',
      'tokenizer.json',
      'checkpoint-6',
    ]) {
      expect(existsSync(join(out, file)), file).toBe(true);
    }
    expect(run.out.join('\n')).toContain('switching to block 1 (roberta.encoder.layer.1.)');
    const predictions = await jsonLines(join(out, 'val_predictions.jsonl'));
    expect(predictions).toHaveLength(16);
    expect(['entailment', 'not_entailment']).toContain(predictions[0]!.prediction);
    // The reported accuracy is the share of the written predictions that match their labels.
    expect(result.metrics.eval_accuracy).toBe(accuracyOf(predictions));
    const log = await jsonLines(join(out, 'trainer_log.jsonl'));
    expect(log.filter((l) => typeof l.eval_loss === 'number')).toHaveLength(2);

    const resumed = capture();
    const again = robertaOptionsFrom([
      '--max_steps',
      '6',
      '--switch_every',
      '2',
      '--eval_every_steps',
      '3',
      '--logging_steps',
      '1',
      '--save_steps',
      '3',
      '--output_dir',
      out,
      '--resume_from_checkpoint',
      join(out, 'checkpoint-3'),
    ]);
    const second = await runSuperGlue(again.options, resumed.io, {
      train: generatedPairTask(64, 1),
      validation: generatedPairTask(16, 2),
    });
    expect(resumed.out.join('\n')).toContain('resuming from');
    expect(second.predictions).toEqual(result.predictions);
    // Dropout included, the resumed run ends on the same weights, bit for bit.
    expect((await readFile(join(out, 'model.safetensors'))).equals(finished)).toBe(true);
  });

  it('a Hugging Face directory on a multiple-choice task (COPA format): LoRA on query/value, head trained', async () => {
    const modelDir = join(dir, 'tiny-roberta');
    const model = new EncoderClassifier(
      encoderConfigFromHf(
        { ...TINY_ROBERTA_CONFIG, num_hidden_layers: 2 },
        { head: 'sequence-classification' },
      ),
      { seed: 3 },
    );
    await saveEncoder(model, modelDir);
    const { tokenizer, config } = new ByteTokenizer().toHuggingFace();
    await import('node:fs/promises').then(async (fs) => {
      await fs.writeFile(join(modelDir, 'tokenizer.json'), JSON.stringify(tokenizer));
      await fs.writeFile(join(modelDir, 'tokenizer_config.json'), JSON.stringify(config));
      const copa = (i: number) =>
        JSON.stringify({
          premise: `The glass fell ${i}.`,
          choice1: 'It broke.',
          choice2: 'It sang.',
          question: 'effect',
          label: i % 2,
          idx: i,
        });
      await fs.mkdir(join(dir, 'sg', 'copa'), { recursive: true });
      await fs.writeFile(
        join(dir, 'sg', 'copa', 'train.jsonl'),
        Array.from({ length: 12 }, (_, i) => copa(i)).join('\n'),
      );
      await fs.writeFile(
        join(dir, 'sg', 'copa', 'val.jsonl'),
        Array.from({ length: 4 }, (_, i) => copa(i)).join('\n'),
      );
    });
    const out = join(dir, 'copa-lora');
    const run = capture();
    const code = await runRobertaCommand(
      [
        '--task_name',
        'copa',
        '--hf_pretrained_model_name',
        modelDir,
        '--data_dir',
        join(dir, 'sg'),
        '--lora_rank',
        '4',
        '--max_steps',
        '3',
        '--train_batch_size',
        '4',
        '--output_dir',
        out,
        '--learning_rate',
        '1e-3',
      ],
      run.io,
    );
    expect(code, run.err.join('\n')).toBe(0);
    expect(run.out.join('\n')).toContain(
      'newly initialised (not in the checkpoint): roberta.pooler.dense.weight, roberta.pooler.dense.bias, classifier.weight, classifier.bias',
    );
    const results = JSON.parse(await readFile(join(out, 'all_results.json'), 'utf8')) as Record<
      string,
      number | string
    >;
    expect(results.method).toBe('lora');
    expect(results.task).toBe('copa');
    // LoRA A and B on query and value of 2 layers (4 x (4 x 64 + 64 x 4)) plus the pooler and classifier.
    expect(results.trainable_parameters).toBe(4 * 2 * 4 * 64 + (64 * 64 + 64) + (64 + 1));
    expect(await jsonLines(join(out, 'val_predictions.jsonl'))).toHaveLength(4);
  });
});

const sharedSuperGlue = resolve(
  process.env.BADAM_SHARED_DATA ??
    join(fileURLToPath(new URL('.', import.meta.url)), '../../../../shared/data'),
  'superglue',
);

describe.skipIf(!existsSync(join(sharedSuperGlue, 'cb', 'train.jsonl')))(
  'real SuperGLUE data (../shared/data)',
  () => {
    it('CB with the built-in tiny encoder: a few BAdam steps, accuracy and macro-F1 on the 56 validation examples', async () => {
      const out = join(dir, 'cb');
      const run = capture();
      const code = await runRobertaCommand(
        [
          '--task_name',
          'cb',
          '--data_dir',
          sharedSuperGlue,
          '--use_block_optim',
          '--switch_every',
          '1',
          '--max_steps',
          '3',
          '--max_seq_length',
          '96',
          '--output_dir',
          out,
        ],
        run.io,
      );
      expect(code, run.err.join('\n')).toBe(0);
      const results = JSON.parse(await readFile(join(out, 'all_results.json'), 'utf8')) as Record<
        string,
        number
      >;
      const predictions = await jsonLines(join(out, 'val_predictions.jsonl'));
      expect(predictions).toHaveLength(56);
      // Accuracy and macro-F1 over CB's three classes, recomputed from the predictions written.
      expect(results.eval_accuracy).toBeCloseTo(accuracyOf(predictions), 12);
      const f1 = ['entailment', 'contradiction', 'neutral'].map((c) => {
        const tp = predictions.filter((p) => p.prediction === c && p.label === c).length;
        const predicted = predictions.filter((p) => p.prediction === c).length;
        const actual = predictions.filter((p) => p.label === c).length;
        return tp === 0 ? 0 : (2 * tp) / (predicted + actual);
      });
      expect(results.eval_f1_macro).toBeCloseTo(f1.reduce((a, b) => a + b, 0) / 3, 12);
    });
  },
);
