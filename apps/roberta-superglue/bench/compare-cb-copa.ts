/**
 * Benchmark: BAdam (block), full Adam, LoRA and BlockOptimizerRatio (sparse) on SuperGLUE CB and COPA from
 * ../shared/data/superglue, with the built-in tiny RoBERTa (4 layers, hidden 64; no pretrained encoder is
 * available offline, so this measures the optimizers' memory, time and learning on equal terms, not
 * RoBERTa-large's accuracy). Same steps, batch, learning rate and seed for each; prints a markdown table.
 *
 *   pnpm --filter @badam/roberta-superglue bench [-- --steps 150 --data_dir ../shared/data/superglue]
 */
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import '@tensorflow/tfjs';
import { defaultSuperGlueDir, robertaOptionsFrom, runSuperGlue } from '../src/index.js';

const { values } = parseArgs({
  options: {
    steps: { type: 'string', default: '150' },
    data_dir: { type: 'string' },
    output_dir: { type: 'string', default: 'output/bench-cb-copa' },
    learning_rate: { type: 'string', default: '1e-3' },
  },
});

const METHODS: Array<[string, string[]]> = [
  [
    'block',
    ['--use_block_optim', '--train_last_layer', '--switch_every', '25', '--switch_mode', 'ascending'],
  ],
  ['full', []],
  ['lora', ['--lora_rank', '8']],
  ['sparse', ['--use_sparse_optim', '--switch_every', '25']],
];
const MB = (b: number) => (b / 1e6).toFixed(2);
const dataDir = values.data_dir ?? defaultSuperGlueDir();
const rows: string[] = [];
const quiet = { log: () => undefined, warn: (m: string) => console.error(m) };

console.log(
  `${cpus()[0]?.model ?? 'cpu'}, ${new Date().toISOString().slice(0, 10)}, ${values.steps} steps, lr ${values.learning_rate}, data ${dataDir}`,
);
for (const task of ['cb', 'copa']) {
  for (const [method, flags] of METHODS) {
    const { options } = robertaOptionsFrom([
      '--task_name',
      task,
      '--data_dir',
      dataDir,
      ...flags,
      '--max_steps',
      values.steps,
      '--learning_rate',
      values.learning_rate,
      '--train_batch_size',
      '16',
      '--max_seq_length',
      '128',
      '--warmup_ratio',
      '0.06',
      '--plot_loss',
      'false',
      '--logging_steps',
      '1000',
      '--output_dir',
      join(values.output_dir, `${task}-${method}`),
      '--overwrite_output_dir',
    ]);
    const started = performance.now();
    const { metrics, model } = await runSuperGlue(options, quiet);
    const seconds = (performance.now() - started) / 1000;
    const score =
      task === 'cb'
        ? `${(100 * Number(metrics.eval_accuracy)).toFixed(1)}% / ${(100 * Number(metrics.eval_f1_macro)).toFixed(1)}%`
        : `${(100 * Number(metrics.eval_accuracy)).toFixed(1)}%`;
    rows.push(
      `| ${task} | ${method} | ${score} | ${Number(metrics.eval_loss).toFixed(3)} | ${MB(Number(metrics.peak_memory_bytes))} | ${MB(Number(metrics.estimated_memory_bytes))} | ${MB(['masters', 'gradients', 'optimizer'].reduce((n, k) => n + Number(metrics[`estimated_${k}_bytes`]), 0))} | ${seconds.toFixed(0)} |`,
    );
    console.error(rows.at(-1));
    model.dispose();
  }
}
console.log(
  '| task | method | accuracy (CB: acc / macro-F1) | eval loss | peak tfjs MB (measured) | estimated total MB | estimated masters + grads + optimizer MB | time (s) |',
);
console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
console.log(rows.join('\n'));
