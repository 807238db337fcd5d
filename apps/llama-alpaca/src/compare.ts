import { join } from 'node:path';
import { readTrainerLog, renderLossPlot } from '@badam/callbacks';
import { alpacaExamples, ByteTokenizer, chatTemplate } from '@badam/data';
import { LlamaForCausalLM, llamaConfigFromHf, llamaWeights } from '@badam/models';
import { prepareRunOutputDir } from '@badam/runner';
import { writeFileAtomic } from '@badam/safetensors';
import * as tf from '@tensorflow/tfjs-core';
import { type EmbeddedSettings, PRETRAIN_STEPS, pretrainOnGeneratedText } from './embedded.js';
import { generatedInstructions, TINY_LLAMA_CONFIG } from './embedded-data.js';
import { predictExamples } from './predict.js';
import { prepareBackend, type RunIO, runTraining, writeJson } from './run-training.js';
import { LLAMA_DIALECT, type TrainOptions } from './train-options.js';

/**
 * The four methods `compare` runs, all with the run's learning rate (the embedded default's 2e-3, or
 * `--learning_rate`), steps, data and starting point. Each method's best rate differs (docs/benchmarks.md
 * lists runs at 1e-3, 2e-3 and 5e-3), so comparing at several rates is the caller's sweep.
 */
export const COMPARED = ['block', 'full', 'lora', 'sparse'] as const;

/** One row of the comparison. */
export interface ComparisonRow {
  method: string;
  peakMemoryBytes: number;
  estimatedMemoryBytes: number;
  estimatedOptimizerBytes: number;
  seconds: number;
  evalLoss: number;
  exactMatch: number;
}

const MB = (b: number) => (b / 1e6).toFixed(2);

/**
 * `badam-llama compare`: the embedded default's fine-tune with BAdam, full Adam, LoRA and
 * BlockOptimizerRatio from the same pretrained tiny model, the same data and steps: a table of peak memory
 * (measured and estimated), time, eval loss and exact match, and one PNG with the four loss curves.
 */
export async function runComparison(
  options: TrainOptions,
  io: RunIO,
  settings: EmbeddedSettings = {},
): Promise<ComparisonRow[]> {
  const {
    pretrainSteps = PRETRAIN_STEPS,
    trainExamples: trainSize = 800,
    evalExamples: evalSize = 80,
  } = settings;
  await prepareBackend(options, io); // first: a backend that cannot run refuses before anything is written
  await prepareRunOutputDir(options, LLAMA_DIALECT, io); // never an earlier comparison's without --overwrite_output_dir
  const tokenizer = new ByteTokenizer();
  const config = llamaConfigFromHf(TINY_LLAMA_CONFIG, 'built-in tiny Llama');
  const instructions = generatedInstructions(trainSize, evalSize, options.seed);
  const trainExamples = alpacaExamples(instructions.train);
  const evalExamples = alpacaExamples(instructions.eval);

  io.log(`== pretraining the shared starting point (${pretrainSteps} steps) ==`);
  const base = new LlamaForCausalLM(config, { seed: options.seed, initializerRange: 0.05 });
  await pretrainOnGeneratedText(base, tokenizer, options, io, pretrainSteps);
  const start = llamaWeights(base);
  base.dispose();

  const rows: ComparisonRow[] = [];
  const curves: Array<{ label: string; points: Array<{ step: number; value: number }> }> = [];
  for (const type of COMPARED) {
    const learningRate = options.learningRate;
    io.log(`\n== ${type} ==`);
    const model = new LlamaForCausalLM(config, { skipInitialization: true });
    for (const w of start)
      tf.tidy(() => model.parameter(w.name).assign(tf.tensor(w.data as Float32Array, [...w.shape])));
    const outputDir = join(options.outputDir, type);
    const began = performance.now();
    const run = await runTraining(
      {
        ...options,
        method: type,
        learningRate,
        switchBlockEvery: type === 'block' || type === 'sparse' ? options.switchBlockEvery : undefined,
        outputDir,
        outputDirIsDefault: false,
        overwriteOutputDir: true,
        plotLoss: false,
        doPredict: false,
      },
      io,
      {
        model,
        tokenizer,
        template: 'default',
        examples: trainExamples,
        validation: evalExamples,
        skipModelSave: true,
      },
    );
    const seconds = (performance.now() - began) / 1000;
    const { exactMatch } = predictExamples(model, tokenizer, chatTemplate('default'), evalExamples, {
      maxNewTokens: 8,
    });
    rows.push({
      method: type,
      peakMemoryBytes: run.metrics.peak_memory_bytes as number,
      estimatedMemoryBytes: run.estimate.total,
      estimatedOptimizerBytes: run.estimate.masters + run.estimate.gradients + run.estimate.optimizerState,
      seconds,
      evalLoss: run.metrics.eval_loss as number,
      exactMatch,
    });
    const log = await readTrainerLog(join(outputDir, 'trainer_log.jsonl'));
    curves.push({
      label: type,
      points: log
        .filter((l) => typeof l.loss === 'number')
        .map((l) => ({ step: l.current_steps as number, value: l.loss as number })),
    });
    model.dispose();
  }
  const png = await renderLossPlot(curves, {
    title: 'training loss: BAdam (block), full Adam, LoRA, BAdam ratio (sparse)',
  });
  await writeFileAtomic(join(options.outputDir, 'compare_loss.png'), [png]);
  await writeJson(join(options.outputDir, 'compare_results.json'), { rows });
  const table = [
    '| method | peak memory measured (MB) | estimated total (MB) | estimated grads + optimizer (MB) | time (s) | eval loss | exact match |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...rows.map(
      (r) =>
        `| ${r.method} | ${MB(r.peakMemoryBytes)} | ${MB(r.estimatedMemoryBytes)} | ${MB(r.estimatedOptimizerBytes)} | ${r.seconds.toFixed(0)} | ${r.evalLoss.toFixed(4)} | ${(100 * r.exactMatch).toFixed(1)}% |`,
    ),
  ].join('\n');
  await writeFileAtomic(join(options.outputDir, 'compare_table.md'), [`${table}\n`]);
  io.log(`\n${table}\n\nloss curves: ${join(options.outputDir, 'compare_loss.png')}`);
  return rows;
}
