import { UsageError } from '@badam/core';
import { ByteTokenizer, pairFormat, type TaskExample } from '@badam/data';
import type { EncoderClassifier } from '@badam/models';
import {
  type ComparisonCell,
  type ComparisonCellResult,
  type ComparisonPlan,
  type ComparisonReport,
  comparisonCellResult,
  evaluateHeldOut,
  type FineTuningMethod,
  prepareRunOutputDir,
  runSeedComparison,
} from '@badam/runner';
import { generatedPairTask } from './embedded-task.js';
import { classificationTask, encodeItems, itemDataSource } from './encoder-batches.js';
import { ROBERTA_DIALECT, type RobertaOptions } from './options.js';
import { type RunIO, runSuperGlue } from './run-superglue.js';

/** The four methods `badam-roberta compare` runs, from the same initialisation, on every seed and rate. */
export const COMPARED_METHODS: readonly FineTuningMethod[] = ['block', 'full', 'lora', 'sparse'];

/** Sizes of the embedded comparison; tests shrink them. */
export interface RobertaComparisonSettings {
  /** Generated training pairs. Default 2000 (the embedded default's). */
  readonly trainExamples?: number;
  /** Generated pairs of the test split and of the validation split, each. Default 200. */
  readonly evalExamples?: number;
}

/** The scores `compare` reports on a held-out split. */
const ROBERTA_METRICS = [
  { key: 'eval_loss', label: 'eval loss', digits: 4 },
  { key: 'accuracy', label: 'accuracy', digits: 1, percent: true },
] as const;

/** Eval loss and accuracy of `model` on `examples`, as the Trainer's evaluation computes them. */
async function scoreSplit(
  model: EncoderClassifier,
  examples: readonly TaskExample[],
  options: RobertaOptions,
): Promise<Record<string, number>> {
  const tokenizer = new ByteTokenizer();
  const positions = model.config.maxPositionEmbeddings - model.config.padTokenId - 1;
  const items = encodeItems(
    examples,
    tokenizer,
    pairFormat(tokenizer, model.config.family),
    Math.min(options.maxSeqLength, positions),
    false,
  );
  const { loss, metrics } = await evaluateHeldOut(
    classificationTask(model),
    itemDataSource(items, options.evalBatchSize, tokenizer.padTokenId),
  );
  return { eval_loss: loss, accuracy: metrics.accuracy ?? Number.NaN };
}

/**
 * `badam-roberta compare`: the embedded entailment task fine-tuned with BAdam (head in every block), full
 * Adam, LoRA (rank 8 on query/value, or `--lora_rank`) and BlockOptimizerRatio from one initialisation of
 * the built-in tiny RoBERTa (`--seed`), on every seed of the plan (data order, dropout, LoRA, block order).
 * The test split is the embedded default's validation set (`generatedPairTask(200, seed + 1000)`); with
 * several rates each method's rate is chosen by mean eval loss on a validation split drawn with
 * `seed + 2000`. Writes compare_table.md, compare_results.json and compare_loss.png.
 */
export async function runRobertaComparison(
  options: RobertaOptions,
  plan: ComparisonPlan,
  io: RunIO,
  settings: RobertaComparisonSettings = {},
): Promise<ComparisonReport> {
  const { trainExamples = 2000, evalExamples = 200 } = settings;
  if (options.taskName !== undefined || options.model !== undefined)
    throw new UsageError(
      'compare runs on the embedded task with the built-in tiny RoBERTa: drop --task_name and --hf_pretrained_model_name (for CB and COPA: pnpm --filter @badam/roberta-superglue bench)',
    );
  await prepareRunOutputDir(options, ROBERTA_DIALECT, io); // never an earlier comparison's without --overwrite_output_dir
  const train = generatedPairTask(trainExamples, options.seed);
  const test = generatedPairTask(evalExamples, options.seed + 1000);
  const validation = generatedPairTask(evalExamples, options.seed + 2000);

  const run = async (cell: ComparisonCell): Promise<ComparisonCellResult> => {
    const method = cell.method as FineTuningMethod;
    const blocks = method === 'block' || method === 'sparse';
    const cellOptions: RobertaOptions = {
      ...options,
      method,
      seed: cell.seed,
      learningRate: cell.learningRate,
      loraRank: method === 'lora' ? options.loraRank || 8 : 0,
      trainLastLayer: method === 'block',
      switchBlockEvery: blocks ? (options.switchBlockEvery ?? 25) : undefined,
      outputDir: cell.outputDir,
      outputDirIsDefault: false,
      overwriteOutputDir: true,
      plotLoss: false,
    };
    const began = performance.now();
    const trained = await runSuperGlue(cellOptions, io, {
      train,
      // The run's own evaluations watch the split the rate is chosen on, never the test split, when choosing.
      validation: cell.scoreValidation ? validation : test,
      initSeed: options.seed,
    });
    const seconds = (performance.now() - began) / 1000;
    const result = await comparisonCellResult({
      outputDir: cell.outputDir,
      metrics: trained.metrics,
      seconds,
      test: await scoreSplit(trained.model, test, cellOptions),
      validation: cell.scoreValidation ? await scoreSplit(trained.model, validation, cellOptions) : undefined,
    });
    trained.model.dispose();
    return result;
  };
  return runSeedComparison({
    methods: COMPARED_METHODS,
    plan,
    outputDir: options.outputDir,
    metrics: ROBERTA_METRICS,
    selectBy: { key: 'eval_loss', lowerIsBetter: true },
    title: 'training loss on the embedded pair task: BAdam (block), full Adam, LoRA, BAdam ratio (sparse)',
    run,
    io,
  });
}
