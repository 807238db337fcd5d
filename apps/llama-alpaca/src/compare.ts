import {
  alpacaExamples,
  ByteTokenizer,
  batchedDataSource,
  type ChatTemplate,
  chatTemplate,
  encodeSupervised,
  type InstructionExample,
} from '@badam/data';
import { LlamaForCausalLM, llamaConfigFromHf, llamaWeights } from '@badam/models';
import {
  type ComparisonCell,
  type ComparisonCellResult,
  type ComparisonPlan,
  type ComparisonReport,
  comparisonCellResult,
  evaluateHeldOut,
  prepareRunOutputDir,
  runSeedComparison,
} from '@badam/runner';
import * as tf from '@tensorflow/tfjs-core';
import { type EmbeddedSettings, PRETRAIN_STEPS, pretrainOnGeneratedText } from './embedded.js';
import { generatedInstructions, TINY_LLAMA_CONFIG } from './embedded-data.js';
import { predictExamples } from './predict.js';
import { prepareBackend, type RunIO, runTraining } from './run-training.js';
import { LLAMA_DIALECT, type TrainOptions } from './train-options.js';
import { causalLmTask } from './training-task.js';

/**
 * The four methods `compare` runs, each from the same pretrained start, on the same data and steps, on
 * every seed and (with `--learning_rates`) every rate.
 */
export const COMPARED = ['block', 'full', 'lora', 'sparse'] as const;

/** Sizes of a comparison: the embedded default's, and the validation split's (only used to choose a rate). */
export interface ComparisonSettings extends EmbeddedSettings {
  /** Generated instructions of the validation split, with `--learning_rates`. Default: as many as `evalExamples`. */
  readonly validationExamples?: number;
}

/** The scores `compare` reports on a held-out split. */
const LLAMA_METRICS = [
  { key: 'eval_loss', label: 'eval loss', digits: 4 },
  { key: 'exact_match', label: 'exact match', digits: 1, percent: true },
] as const;

/** Eval loss (as the Trainer computes it), token accuracy and greedy exact match of `model` on `examples`. */
async function scoreSplit(
  model: LlamaForCausalLM,
  tokenizer: ByteTokenizer,
  template: ChatTemplate,
  examples: readonly InstructionExample[],
  options: TrainOptions,
): Promise<Record<string, number>> {
  const encoded = encodeSupervised(examples, tokenizer, template, { cutoffLen: options.cutoffLen }).examples;
  const data = batchedDataSource(encoded, {
    batchSize: options.evalBatchSize,
    padTokenId: tokenizer.padTokenId,
  });
  const { loss, metrics } = await evaluateHeldOut(causalLmTask(model), data);
  const { exactMatch } = predictExamples(model, tokenizer, template, examples, { maxNewTokens: 8 });
  return { eval_loss: loss, token_accuracy: metrics.accuracy ?? Number.NaN, exact_match: exactMatch };
}

/**
 * `badam-llama compare`: the embedded default's fine-tune with BAdam, full Adam, LoRA and
 * BlockOptimizerRatio from one pretrained tiny model (pretrained once, with `--seed`), on the same generated
 * data, on every seed of the plan (the seed drives data order, LoRA's initialisation, BAdam's random order
 * and the sparse masks). With several learning rates each method's rate is chosen by its mean eval loss on a
 * validation split and the table reports the test split (the embedded default's held-out instructions),
 * which took no part in the choice. Writes compare_table.md, compare_results.json and compare_loss.png.
 */
export async function runComparison(
  options: TrainOptions,
  plan: ComparisonPlan,
  io: RunIO,
  settings: ComparisonSettings = {},
): Promise<ComparisonReport> {
  const {
    pretrainSteps = PRETRAIN_STEPS,
    trainExamples: trainSize = 800,
    evalExamples: evalSize = 80,
    validationExamples: validationSize = evalSize,
  } = settings;
  await prepareBackend(options, io); // first: a backend that cannot run refuses before anything is written
  await prepareRunOutputDir(options, LLAMA_DIALECT, io); // never an earlier comparison's without --overwrite_output_dir
  const tokenizer = new ByteTokenizer();
  const template = chatTemplate('default');
  const config = llamaConfigFromHf(TINY_LLAMA_CONFIG, 'built-in tiny Llama');
  const instructions = generatedInstructions(
    trainSize,
    evalSize,
    options.seed,
    plan.chooseRate ? validationSize : 0,
  );
  const trainExamples = alpacaExamples(instructions.train);
  const testExamples = alpacaExamples(instructions.eval);
  const validationExamples = alpacaExamples(instructions.validation);

  io.log(`== pretraining the shared starting point (${pretrainSteps} steps, seed ${options.seed}) ==`);
  const base = new LlamaForCausalLM(config, { seed: options.seed, initializerRange: 0.05 });
  await pretrainOnGeneratedText(base, tokenizer, options, io, pretrainSteps);
  const start = llamaWeights(base);
  base.dispose();

  const run = async (cell: ComparisonCell): Promise<ComparisonCellResult> => {
    const model = new LlamaForCausalLM(config, { skipInitialization: true });
    for (const w of start)
      tf.tidy(() => model.parameter(w.name).assign(tf.tensor(w.data as Float32Array, [...w.shape])));
    const cellOptions: TrainOptions = {
      ...options,
      method: cell.method as TrainOptions['method'],
      learningRate: cell.learningRate,
      seed: cell.seed,
      switchBlockEvery:
        cell.method === 'block' || cell.method === 'sparse' ? options.switchBlockEvery : undefined,
      outputDir: cell.outputDir,
      outputDirIsDefault: false,
      overwriteOutputDir: true,
      plotLoss: false,
      doPredict: false,
    };
    const began = performance.now();
    const trained = await runTraining(cellOptions, io, {
      model,
      tokenizer,
      template: 'default',
      examples: trainExamples,
      // The run's own evaluations watch the split the rate is chosen on, never the test split, when choosing.
      validation: cell.scoreValidation ? validationExamples : testExamples,
      skipModelSave: true,
    });
    const seconds = (performance.now() - began) / 1000;
    const test = await scoreSplit(model, tokenizer, template, testExamples, cellOptions);
    const validation = cell.scoreValidation
      ? await scoreSplit(model, tokenizer, template, validationExamples, cellOptions)
      : undefined;
    model.dispose();
    return comparisonCellResult({
      outputDir: cell.outputDir,
      metrics: trained.metrics,
      seconds,
      test,
      validation,
    });
  };
  return runSeedComparison({
    methods: COMPARED,
    plan,
    outputDir: options.outputDir,
    metrics: LLAMA_METRICS,
    selectBy: { key: 'eval_loss', lowerIsBetter: true },
    title: 'training loss: BAdam (block), full Adam, LoRA, BAdam ratio (sparse)',
    run,
    io,
  });
}
