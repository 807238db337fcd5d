import { UsageError } from '@badam/core';
import {
  alpacaExamples,
  ByteTokenizer,
  batchedDataSource,
  type ChatTemplate,
  chatTemplate,
  encodeSupervised,
  type InstructionExample,
} from '@badam/data';
import { generatedInstructions, TINY_LLAMA_CONFIG } from '@badam/embedded';
import { causalLmTask, LlamaForCausalLM, llamaConfigFromHf, llamaWeights } from '@badam/models';
import {
  type ComparisonPlan,
  type ComparisonReport,
  comparisonRunOptions,
  isDeviceBackend,
  runSeedComparison,
} from '@badam/runner';
import { evaluateHeldOut } from '@badam/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { type EmbeddedSettings, embeddedStart } from './embedded.js';
import { predictExamples } from './predict.js';
import { prepareBackend, type RunIO, runTraining } from './run-training.js';
import { LLAMA_DIALECT, type TrainOptions } from './train-options.js';

/** Sizes of a comparison: the embedded default's, and the validation split's (only used to choose a rate). */
export interface ComparisonSettings extends EmbeddedSettings {
  /** Generated instructions of the validation split, with `--learning_rates`. Default: as many as `evalExamples`. */
  readonly validationExamples?: number;
}

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
 * `badam-llama compare`: the embedded default's fine-tune with every method (BAdam, full Adam, LoRA,
 * BlockOptimizerRatio) from one pretrained tiny model (the shipped start; with `pretrainSteps`, one
 * pretrained from scratch with `--seed`), on the same generated
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
    pretrainSteps,
    trainExamples: trainSize = 800,
    evalExamples: evalSize = 80,
    validationExamples: validationSize = evalSize,
  } = settings;
  if (isDeviceBackend(options.backend)) {
    throw new UsageError(
      `badam-llama compare runs on --backend tfjs: it compares block and full with lora and sparse, which @badam/cuda does not train yet (train block or full on ${options.backend} with badam-llama train)`,
    );
  }
  // first: a backend that cannot run refuses before anything is written
  await prepareBackend(options, io, 'compare trains lora and sparse too, which run on tfjs only');
  const tokenizer = new ByteTokenizer();
  const template = chatTemplate('default');
  const config = llamaConfigFromHf(TINY_LLAMA_CONFIG, 'built-in tiny Llama');
  const instructions = generatedInstructions(
    trainSize,
    evalSize,
    options.seed,
    plan.chooseRate ? validationSize : 0,
  );
  const splits = {
    train: alpacaExamples(instructions.train),
    test: alpacaExamples(instructions.eval),
    validation: alpacaExamples(instructions.validation),
  };
  let start: ReturnType<typeof llamaWeights> = [];

  const pretrain = async () => {
    io.log('== the shared starting point ==');
    const base = await embeddedStart(options, io, pretrainSteps);
    start = llamaWeights(base);
    base.dispose();
  };
  return runSeedComparison({
    options,
    dialect: LLAMA_DIALECT,
    plan,
    metrics: [{ key: 'exact_match', label: 'exact match', digits: 1, percent: true }],
    title: 'training loss: BAdam (block), full Adam, LoRA, BAdam ratio (sparse)',
    prepare: pretrain,
    train: async (cell) => {
      const model = new LlamaForCausalLM(config, { skipInitialization: true });
      for (const w of start)
        tf.tidy(() => model.parameter(w.name).assign(tf.tensor(w.data as Float32Array, [...w.shape])));
      const cellOptions: TrainOptions = { ...comparisonRunOptions(options, cell), doPredict: false };
      const { metrics } = await runTraining(cellOptions, io, {
        model,
        tokenizer,
        template: 'default',
        examples: splits.train,
        // The run's own evaluations watch the split the rate is chosen on, never the test split, when choosing.
        validation: cell.scoreValidation ? splits.validation : splits.test,
        skipModelSave: true,
      });
      return {
        metrics,
        score: (split) => scoreSplit(model, tokenizer, template, splits[split], cellOptions),
        dispose: () => model.dispose(),
      };
    },
    io,
  });
}
