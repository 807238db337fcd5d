import { join } from 'node:path';
import { alpacaExamples, ByteTokenizer, chatTemplate, type InstructionExample } from '@badam/data';
import { BUILTIN_INITIALIZER_RANGE, builtinLlamaConfig, generatedInstructions, TASKS } from '@badam/embedded';
import { type LlamaConfig, LlamaForCausalLM } from '@badam/models';
import { isDeviceBackend, prepareRunOutputDir } from '@badam/runner';
import * as tf from '@tensorflow/tfjs-core';
import { type DeviceRunModel, loadDeviceLlama } from './device-model.js';
import {
  EMBEDDED_PRETRAINED_DIR,
  loadEmbeddedPretrained,
  type PretrainingRecord,
  pretrainOnGeneratedText,
} from './embedded-pretrained.js';
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

/** Sizes of the embedded default; tests shrink them. */
export interface EmbeddedSettings {
  /**
   * Undefined (the default): start from the shipped pretrained model (@badam/embedded's `assets/embedded-pretrained`, made by `badam-llama pretrain`).
   * A number: pretrain the built-in tiny Llama from its seeded initialisation for that many full-AdamW
   * steps on 2,000 generated lines first, as the embedded default did before the start shipped.
   */
  readonly pretrainSteps?: number;
  /** Generated training instructions. Default 800. */
  readonly trainExamples?: number;
  /** Held-out instructions scored by exact match. Default 80. */
  readonly evalExamples?: number;
}

/** Lines of generated text of a pretraining from scratch at run time ({@link EmbeddedSettings.pretrainSteps}). */
const RUN_TIME_CORPUS_LINES = 2000;

/**
 * The model the embedded default and `compare` fine-tune: the shipped pretrained start, or (with
 * `pretrainSteps`) the built-in tiny Llama pretrained from scratch with `options.seed`.
 */
export async function embeddedStart(
  options: TrainOptions,
  io: RunIO,
  pretrainSteps: number | undefined,
  beforeWork: (model: LlamaForCausalLM) => Promise<void> = async () => {},
): Promise<LlamaForCausalLM> {
  if (pretrainSteps === undefined) {
    const { model, record } = await loadEmbeddedPretrained();
    try {
      await beforeWork(model);
    } catch (error) {
      model.dispose();
      throw error;
    }
    io.log(startingFromShipped(record));
    return model;
  }
  const model = new LlamaForCausalLM(builtinLlamaConfig(), {
    seed: options.seed,
    initializerRange: BUILTIN_INITIALIZER_RANGE,
  });
  try {
    await beforeWork(model);
    io.log(
      `badam-llama: pretraining from scratch (full AdamW, ${pretrainSteps} steps, seed ${options.seed})`,
    );
    await pretrainOnGeneratedText(model, new ByteTokenizer(), options, io, {
      steps: pretrainSteps,
      seed: options.seed,
      corpusLines: RUN_TIME_CORPUS_LINES,
    });
  } catch (error) {
    model.dispose();
    throw error;
  }
  return model;
}

function startingFromShipped(record: PretrainingRecord): string {
  return `badam-llama: starting from the shipped pretrained model (${record.settings.steps} steps of full AdamW on generated text, final loss ${record.final_loss.toFixed(4)})`;
}

/**
 * {@link embeddedStart} on a device backend: the same start built on the device (`--backend cuda|cpu`), never as a
 * tfjs model: the shipped weights loaded onto it, or (with `pretrainSteps`) the built-in tiny Llama
 * initialised as on tfjs and pretrained there.
 */
async function deviceEmbeddedStart(
  options: TrainOptions,
  io: RunIO,
  pretrainSteps: number | undefined,
  checkConfig: (config: LlamaConfig) => void,
  beforeWork: () => Promise<void>,
): Promise<DeviceRunModel> {
  const shipped = pretrainSteps === undefined ? await loadEmbeddedPretrained() : undefined;
  if (shipped) shipped.model.dispose(); // only its record: the weights go straight onto the device
  const model = await loadDeviceLlama(
    { ...options, modelNameOrPath: undefined },
    io,
    checkConfig,
    shipped ? { directory: EMBEDDED_PRETRAINED_DIR } : undefined,
  );
  try {
    await beforeWork();
  } catch (error) {
    model.model.dispose();
    throw error;
  }
  if (shipped) {
    io.log(startingFromShipped(shipped.record));
    return model;
  }
  try {
    io.log(
      `badam-llama: pretraining from scratch on the device (full AdamW, ${pretrainSteps} steps, seed ${options.seed})`,
    );
    await pretrainOnGeneratedText(model, new ByteTokenizer(), options, io, {
      steps: pretrainSteps!,
      seed: options.seed,
      corpusLines: RUN_TIME_CORPUS_LINES,
    });
  } catch (error) {
    model.model.dispose();
    throw error;
  }
  return model;
}

function parameterCount(model: LlamaForCausalLM | DeviceRunModel): number {
  if (model instanceof LlamaForCausalLM) return model.parameterCount;
  return model.model.parameters().reduce((n, p) => n + p.shape.reduce((a, b) => a * b, 1), 0);
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

/** What the embedded default reports. */
export interface EmbeddedResult {
  readonly before: Record<string, number>;
  readonly after: Record<string, number>;
  readonly metrics: Record<string, number | string>;
  readonly outputDir: string;
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
 * The project's main job: the built-in tiny Llama (byte tokenizer), pretrained on generated text (the shipped
 * start in @badam/embedded's `assets/embedded-pretrained`), is instruction-tuned with the chosen finetuning type (BAdam by default) on generated
 * instructions — copy, reverse, sort, add — and its exact-match accuracy on held-out instructions is
 * reported before and after. Runs on a CPU in a few minutes: by default (`--backend auto`) on a GPU if one
 * is found, else on @badam/cuda's CPU engine, with a tfjs copy of its weights generating the answers that are
 * scored; `--backend tfjs` trains on TensorFlow.js (wasm) as before.
 */
export async function runEmbeddedDefault(
  options: TrainOptions,
  io: RunIO,
  settings: EmbeddedSettings = {},
): Promise<EmbeddedResult> {
  const { pretrainSteps, trainExamples: trainSize = 800, evalExamples: evalSize = 80 } = settings;
  await prepareBackend(options, io);
  const tokenizer = new ByteTokenizer();
  io.log('\n== 1/3 the pretrained start ==');
  // Before any work: the flags the model decides on, and the output directory (never an earlier run's
  // without --overwrite_output_dir).
  const outputDirReady = async () => {
    await prepareRunOutputDir(options, LLAMA_DIALECT, io);
  };
  const model = isDeviceBackend(options.backend)
    ? await deviceEmbeddedStart(
        options,
        io,
        pretrainSteps,
        (config) => checkCutoffLen(options, { maxPositions: config.maxPositionEmbeddings, config }),
        outputDirReady,
      )
    : await embeddedStart(options, io, pretrainSteps, async (m) => {
        checkCutoffLen(options, m);
        await outputDirReady();
      });
  const instructions = generatedInstructions(trainSize, evalSize, options.seed);
  const trainExamples = alpacaExamples(instructions.train);
  const evalExamples = alpacaExamples(instructions.eval);
  io.log(
    `badam-llama: embedded default: built-in tiny Llama (${parameterCount(model).toLocaleString('en')} parameters, byte tokenizer)`,
  );

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
