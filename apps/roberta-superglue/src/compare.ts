import { UsageError } from '@badam/core';
import {
  type ComparisonPlan,
  type ComparisonReport,
  comparisonRunOptions,
  runSeedComparison,
} from '@badam/runner';
import { generatedPairTask } from './embedded-task.js';
import { heldOutScores } from './evaluate-task.js';
import { ROBERTA_DIALECT, type RobertaOptions } from './options.js';
import { type RunIO, runSuperGlue } from './run-superglue.js';

/** Sizes of the embedded comparison; tests shrink them. */
export interface RobertaComparisonSettings {
  /** Generated training pairs. Default 2000 (the embedded default's). */
  readonly trainExamples?: number;
  /** Generated pairs of the test split and of the validation split, each. Default 200. */
  readonly evalExamples?: number;
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
  const splits = {
    train: generatedPairTask(trainExamples, options.seed),
    test: generatedPairTask(evalExamples, options.seed + 1000),
    validation: generatedPairTask(evalExamples, options.seed + 2000),
  };

  return runSeedComparison({
    options,
    dialect: ROBERTA_DIALECT,
    plan,
    metrics: [{ key: 'accuracy', label: 'accuracy', digits: 1, percent: true }],
    title: 'training loss on the embedded pair task: BAdam (block), full Adam, LoRA, BAdam ratio (sparse)',
    train: async (cell) => {
      const cellOptions: RobertaOptions = {
        ...comparisonRunOptions(options, cell, 25),
        loraRank: cell.method === 'lora' ? options.loraRank || 8 : 0,
        trainLastLayer: cell.method === 'block',
      };
      const { metrics, model } = await runSuperGlue(cellOptions, io, {
        train: splits.train,
        // The run's own evaluations watch the split the rate is chosen on, never the test split, when choosing.
        validation: cell.scoreValidation ? splits.validation : splits.test,
        initSeed: options.seed,
      });
      return {
        metrics,
        score: (split) => heldOutScores(model, splits[split], cellOptions),
        dispose: () => model.dispose(),
      };
    },
    io,
  });
}
