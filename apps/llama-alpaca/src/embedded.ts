import { join } from 'node:path';
import { alpacaExamples, ByteTokenizer, chatTemplate, type InstructionExample } from '@badam/data';
import { LlamaForCausalLM } from '@badam/models';
import { prepareRunOutputDir } from '@badam/runner';
import * as tf from '@tensorflow/tfjs-core';
import {
  BUILTIN_INITIALIZER_RANGE,
  builtinLlamaConfig,
  type DeviceRunModel,
  loadDeviceLlama,
} from './device-model.js';
import { generatedCorpus, generatedInstructions, TASKS } from './embedded-data.js';
import { predictExamples } from './predict.js';
import { checkCutoffLen, prepareBackend, type RunIO, runTraining, writeJson } from './run-training.js';
import { LLAMA_DIALECT, type TrainOptions } from './train-options.js';

/** Hyperparameters of the embedded default where the command line does not set them. */
export const EMBEDDED_DEFAULTS: Readonly<Record<string, string | number | boolean>> = {
  // The best of 1e-3, 2e-3 and 5e-3 for BAdam on this task (docs/benchmarks.md, compare at each rate).
  learning_rate: 2e-3,
  per_device_train_batch_size: 16,
  per_device_eval_batch_size: 16,
  cutoff_len: 64,
  max_steps: 800,
  switch_block_every: 50,
  lr_scheduler_type: 'cosine',
  warmup_ratio: 0.05,
  logging_steps: 20,
  eval_steps: 200,
  plot_loss: true,
  badam_verbose: 1,
};

/** Steps of the pretraining phase on generated text. */
export const PRETRAIN_STEPS = 100;

/** Sizes of the embedded default; tests shrink them. */
export interface EmbeddedSettings {
  /** Full-AdamW steps on generated text before instruction tuning. Default {@link PRETRAIN_STEPS}. */
  readonly pretrainSteps?: number;
  /** Generated training instructions. Default 800. */
  readonly trainExamples?: number;
  /** Held-out instructions scored by exact match. Default 80. */
  readonly evalExamples?: number;
}

/**
 * Pretrains `model` in place with full AdamW on generated text (statements such as `abc reversed is cba.`)
 * for `steps` steps, so instruction tuning starts from a model that has seen the vocabulary and the facts.
 * Every parameter is left trainable (the runner kit gives back the `trainable` flags it found).
 */
export async function pretrainOnGeneratedText(
  model: LlamaForCausalLM | DeviceRunModel,
  tokenizer: ByteTokenizer,
  options: TrainOptions,
  io: RunIO,
  steps: number,
): Promise<void> {
  const corpus = generatedCorpus(2000, options.seed + 1).map((line) => ({
    turns: [{ user: line, assistant: '' }],
    system: '',
  }));
  await runTraining(
    {
      ...options,
      stage: 'pt',
      method: 'full',
      template: undefined,
      maxSteps: steps,
      learningRate: 3e-3,
      lrSchedulerType: 'cosine',
      warmupRatio: 0.05,
      valSize: 0,
      evalSteps: undefined,
      saveSteps: undefined,
      resumeFromCheckpoint: undefined,
      doPredict: false,
      plotLoss: false,
      overwriteOutputDir: true,
      outputDir: join(options.outputDir, 'pretrain'),
      outputDirIsDefault: false,
      gradientAccumulationSteps: 1,
    },
    io,
    {
      ...(model instanceof LlamaForCausalLM ? { model } : { deviceModel: model }),
      tokenizer,
      examples: corpus,
      skipModelSave: true,
    },
  );
}

function parameterCount(model: LlamaForCausalLM | DeviceRunModel): number {
  if (model instanceof LlamaForCausalLM) return model.parameterCount;
  return model.model.parameters().reduce((n, p) => n + p.shape.reduce((a, b) => a * b, 1), 0);
}

/** What the embedded default reports. */
export interface EmbeddedResult {
  readonly before: Record<string, number>;
  readonly after: Record<string, number>;
  readonly metrics: Record<string, number | string>;
  readonly outputDir: string;
}

/**
 * A tfjs copy of a model on the device, for generation (which runs on tfjs only): fine for the tiny
 * built-in Llama, whose fp32 weights are a few hundred kilobytes.
 */
function tfjsCopy(device: DeviceRunModel): LlamaForCausalLM {
  const copy = new LlamaForCausalLM(device.config, { skipInitialization: true });
  for (const w of device.model.readWeights())
    tf.tidy(() => copy.parameter(w.name).assign(tf.tensor(w.data as Float32Array, [...w.shape])));
  return copy;
}

function accuracyByTask(
  model: LlamaForCausalLM | DeviceRunModel,
  tokenizer: ByteTokenizer,
  evalSet: ReturnType<typeof generatedInstructions>['eval'],
  examples: readonly InstructionExample[],
): Record<string, number> {
  const onTfjs = model instanceof LlamaForCausalLM ? model : tfjsCopy(model);
  let predicted: ReturnType<typeof predictExamples>;
  try {
    predicted = predictExamples(onTfjs, tokenizer, chatTemplate('default'), examples, { maxNewTokens: 8 });
  } finally {
    if (onTfjs !== model) onTfjs.dispose();
  }
  const { predictions, exactMatch } = predicted;
  const result: Record<string, number> = { all: exactMatch };
  for (const task of TASKS) {
    const idx = evalSet.map((e, i) => (e.task === task ? i : -1)).filter((i) => i >= 0);
    result[task] =
      idx.filter((i) => predictions[i]!.predict.trim() === predictions[i]!.label.trim()).length /
      Math.max(idx.length, 1);
  }
  return result;
}

/**
 * The project's main job: a built-in tiny Llama (byte tokenizer) is pretrained briefly on generated text
 * with full AdamW, then instruction-tuned with the chosen finetuning type (BAdam by default) on generated
 * instructions — copy, reverse, sort, add — and its exact-match accuracy on held-out instructions is
 * reported before and after. Runs on the CPU (wasm backend) in a few minutes. With `--backend cuda` the model
 * trains on the device (the CPU reference device with `--cuda_device cpu`), and a tfjs copy of its
 * weights generates the answers that are scored.
 */
export async function runEmbeddedDefault(
  options: TrainOptions,
  io: RunIO,
  settings: EmbeddedSettings = {},
): Promise<EmbeddedResult> {
  const {
    pretrainSteps = PRETRAIN_STEPS,
    trainExamples: trainSize = 800,
    evalExamples: evalSize = 80,
  } = settings;
  await prepareBackend(options, io);
  const tokenizer = new ByteTokenizer();
  // Before any work: the flags the model decides on, and the output directory (never an earlier run's
  // without --overwrite_output_dir).
  const model =
    options.backend === 'cuda'
      ? await loadDeviceLlama({ ...options, modelNameOrPath: undefined }, io, (config) =>
          checkCutoffLen(options, { maxPositions: config.maxPositionEmbeddings, config }),
        )
      : new LlamaForCausalLM(builtinLlamaConfig(), {
          seed: options.seed,
          initializerRange: BUILTIN_INITIALIZER_RANGE,
        });
  if (model instanceof LlamaForCausalLM) checkCutoffLen(options, model);
  await prepareRunOutputDir(options, LLAMA_DIALECT, io);
  const instructions = generatedInstructions(trainSize, evalSize, options.seed);
  const trainExamples = alpacaExamples(instructions.train);
  const evalExamples = alpacaExamples(instructions.eval);
  io.log(
    `badam-llama: embedded default: built-in tiny Llama (${parameterCount(model).toLocaleString('en')} parameters, byte tokenizer)`,
  );

  io.log(`\n== 1/3 pretraining on generated text (full AdamW, ${pretrainSteps} steps) ==`);
  await pretrainOnGeneratedText(model, tokenizer, options, io, pretrainSteps);

  const before = accuracyByTask(model, tokenizer, instructions.eval, evalExamples);
  io.log(
    `\n== 2/3 exact match on ${evalExamples.length} held-out instructions before fine-tuning: ${(100 * before.all!).toFixed(1)}% ==`,
  );

  io.log(`\n== 3/3 instruction tuning (${options.method}) ==`);
  const run = await runTraining(options, io, {
    ...(model instanceof LlamaForCausalLM ? { model } : { deviceModel: model }),
    tokenizer,
    template: 'default',
    examples: trainExamples,
    validation: evalExamples,
    outputDirReady: true,
  });
  const after = accuracyByTask(model, tokenizer, instructions.eval, evalExamples);
  const rows = ['all', ...TASKS].map(
    (t) =>
      `  ${t.padEnd(8)} ${(100 * before[t]!).toFixed(1).padStart(6)}% -> ${(100 * after[t]!).toFixed(1).padStart(6)}%`,
  );
  io.log(
    `\nexact match on held-out instructions, before -> after ${options.method} fine-tuning:\n${rows.join('\n')}`,
  );
  if (!(model instanceof LlamaForCausalLM)) model.model.dispose();
  const metrics = { ...run.metrics, exact_match_before: before.all!, exact_match_after: after.all! };
  await writeJson(join(options.outputDir, 'all_results.json'), metrics);
  await writeJson(join(options.outputDir, 'embedded_results.json'), {
    before,
    after,
    finetuning_type: options.method,
  });
  io.log(
    `outputs in ${options.outputDir}: the model (config.json, model.safetensors, tokenizer.json), trainer_log.jsonl, training_loss.png, all_results.json`,
  );
  return { before, after, metrics, outputDir: options.outputDir };
}
