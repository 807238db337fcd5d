import { join } from 'node:path';
import { type RunIO, writeResultsJson } from '@badam/callbacks';
import { estimateActivationBytes, type MemoryEstimate, type TrainerCallback, UsageError } from '@badam/core';
import {
  alpacaExamples,
  ByteTokenizer,
  batchedDataSource,
  type ChatTemplate,
  encodePretraining,
  encodeSupervised,
  HfTokenizer,
  type InstructionExample,
  loadInstructionDataset,
  type PaddedBatch,
  splitValidation,
  type TokenizedExample,
  type Tokenizer,
} from '@badam/data';
import { LlamaForCausalLM, llamaConfigFromHf, loadLlama, saveLlama, saveLoraAdapter } from '@badam/models';
import {
  fineTune,
  prepareRunBackend,
  prepareRunOutputDir,
  type RunnerModel,
  type RunSettings,
  writeRunResults,
} from '@badam/runner';
import { writeFileAtomic } from '@badam/safetensors';
import { chooseChatTemplate } from './chat-template-choice.js';
import { generatedInstructions, TINY_LLAMA_CONFIG } from './embedded-data.js';
import { type ModelFilesSource, writeModelFiles } from './model-files.js';
import { type Prediction, predictExamples } from './predict.js';
import { LLAMA_DIALECT, type TrainOptions } from './train-options.js';
import { causalLmTask } from './training-task.js';

/** Where messages go (the shared shape from @badam/callbacks). */
export type { RunIO };

/** What a training run produced. */
export interface TrainRunResult {
  readonly outputDir: string;
  /** Hugging Face-style results: train_loss, train_runtime, eval_loss, peak memory... */
  readonly metrics: Record<string, number | string>;
  readonly model: LlamaForCausalLM;
  readonly tokenizer: Tokenizer;
  readonly template: ChatTemplate;
  readonly validation: readonly InstructionExample[];
  readonly predictions: Prediction[] | undefined;
  readonly estimate: MemoryEstimate;
  readonly stopReason: string | undefined;
}

/** Inputs given in code instead of files (the embedded default, tests). */
export interface RunInputs {
  model?: LlamaForCausalLM;
  tokenizer?: Tokenizer;
  template?: string;
  examples?: readonly InstructionExample[];
  /** A fixed validation set (instead of splitting `val_size` off the examples). */
  validation?: readonly InstructionExample[];
  /** Extra trainer callbacks. */
  callbacks?: readonly TrainerCallback[];
  /** Skip saving the model at the end. */
  skipModelSave?: boolean;
  /** The caller already prepared `options.outputDir` (the embedded default does, before pretraining). */
  outputDirReady?: boolean;
}

/**
 * Gets the run's tensor backend ready (`--backend`; on tfjs `--tfjs_backend` and @badam/native's matrix
 * multiply) before any work is done. Returns a label such as `tfjs wasm + native avx512 x2`.
 */
export async function prepareBackend(options: TrainOptions, io: RunIO): Promise<string> {
  const label = await prepareRunBackend(options.backend, options, { kind: 'Llama' }, (m) =>
    io.warn(`badam-llama: ${m}`),
  );
  io.log(`badam-llama: backend ${label}`);
  return label;
}

/** Loads (or builds) the model and tokenizer named by the options. */
export async function loadModelAndTokenizer(
  options: TrainOptions,
  io: Pick<RunIO, 'warn'> = console,
): Promise<{ model: LlamaForCausalLM; tokenizer: Tokenizer; builtin: boolean }> {
  if (options.modelNameOrPath === undefined) {
    const model = new LlamaForCausalLM(llamaConfigFromHf(TINY_LLAMA_CONFIG, 'built-in tiny Llama'), {
      seed: options.seed,
      initializerRange: 0.05,
    });
    return { model, tokenizer: new ByteTokenizer(), builtin: true };
  }
  const { model, unusedTensors } = await loadLlama(options.modelNameOrPath);
  if (unusedTensors.length > 0) {
    io.warn(
      `badam-llama: ${unusedTensors.length} tensor(s) of the checkpoint are not used: ${unusedTensors.slice(0, 3).join(', ')}...`,
    );
  }
  return { model, tokenizer: await HfTokenizer.fromDirectory(options.modelNameOrPath), builtin: false };
}

/** The Llama as the runner kit trains it: BAdam's partition choices, its LoRA adapters, the tfjs model. */
export function llamaRunnerModel(model: LlamaForCausalLM, options: TrainOptions): RunnerModel<PaddedBatch> {
  return {
    kind: 'Llama',
    partition: { includeEmbedding: options.includeEmbedding, includeLmHead: options.includeLmHead },
    addLora: () =>
      model.addLora(
        {
          rank: options.loraRank,
          alpha: options.loraAlpha,
          dropout: options.loraDropout,
          targetModules: options.loraTarget,
        },
        options.seed,
      ),
    tfjs: { namedParameters: () => model.namedParameters, task: causalLmTask(model) },
  };
}

/**
 * One training run of `badam-llama`: model, tokenizer and data as the options say, then the runner kit's
 * fine-tune (the finetuning type's optimizer on the chosen backend, the Trainer with progress, logs, plots,
 * checkpoints and Ctrl-C handling), then the model, results and (with --do_predict) predictions written to
 * the output directory.
 */
export async function runTraining(
  options: TrainOptions,
  io: RunIO,
  inputs: RunInputs = {},
): Promise<TrainRunResult> {
  const backendLabel = await prepareBackend(options, io);
  if (!inputs.outputDirReady) await prepareRunOutputDir(options, LLAMA_DIALECT, io);
  if (options.bf16)
    io.warn(
      'badam-llama: --bf16 on tfjs: training stays fp32 (tfjs has no bf16); the saved model is written in bf16',
    );

  const loaded =
    inputs.model !== undefined && inputs.tokenizer !== undefined
      ? { model: inputs.model, tokenizer: inputs.tokenizer, builtin: false }
      : await loadModelAndTokenizer(options, io);
  const { model, tokenizer } = loaded;
  checkCutoffLen(options, model);
  model.gradientCheckpointing = options.gradientCheckpointing;
  // --template by name; else the model's own chat_template (tokenizer_config.json); else alpaca.
  const template = await chooseChatTemplate(
    options.template ?? inputs.template,
    loaded.builtin ? undefined : options.modelNameOrPath,
    loaded.builtin ? 'default' : 'alpaca',
  );

  const examples =
    inputs.examples ??
    (options.dataset !== undefined
      ? await loadInstructionDataset(options.dataset, options.datasetDir, { maxSamples: options.maxSamples })
      : alpacaExamples(generatedInstructions(800, 0, options.seed).train));
  const { train: trainRaw, validation } =
    inputs.validation !== undefined
      ? { train: [...examples], validation: [...inputs.validation] }
      : splitValidation(examples, options.valSize, options.seed);
  const encode = (items: readonly InstructionExample[]): TokenizedExample[] => {
    if (options.stage === 'pt') return encodePretraining(items, tokenizer, template, options.cutoffLen);
    const { examples: encoded, dropped } = encodeSupervised(items, tokenizer, template, {
      cutoffLen: options.cutoffLen,
    });
    if (dropped > 0)
      io.warn(`badam-llama: ${dropped} example(s) had no response token within cutoff_len and were dropped`);
    return encoded;
  };
  const trainSet = encode(trainRaw);
  const evalSet = validation.length > 0 ? encode(validation) : [];
  if (trainSet.length === 0)
    throw new UsageError('no training examples left after tokenization: check --dataset and --cutoff_len');
  const longest = Math.max(...trainSet.map((e) => e.inputIds.length));
  const padTo = longest + ((8 - (longest % 8)) % 8) <= model.maxPositions ? 8 : 1;
  const trainData = batchedDataSource(trainSet, {
    batchSize: options.batchSize,
    padTokenId: tokenizer.padTokenId,
    shuffleSeed: options.seed,
    groupByLength: options.groupByLength,
    padToMultipleOf: padTo,
  });
  const evalData =
    evalSet.length > 0
      ? batchedDataSource(evalSet, { batchSize: options.evalBatchSize, padTokenId: tokenizer.padTokenId })
      : undefined;
  if (options.evalStrategy === 'epoch' && evalData !== undefined)
    options.evalSteps = Math.max(1, Math.ceil((trainData.length ?? 1) / options.gradientAccumulationSteps));
  io.log(
    `badam-llama: ${trainSet.length} training and ${evalSet.length} validation examples (${options.stage}, template ${template.name}, cutoff ${options.cutoffLen})`,
  );

  // Checkpoints hold fp32 weights; the folder's files make each one loadable as a model (chat, training).
  const modelFiles: ModelFilesSource = {
    model,
    tokenizer,
    sourceDir: options.modelNameOrPath,
    dtype: 'float32',
  };
  const run = await fineTune<PaddedBatch>({
    dialect: LLAMA_DIALECT,
    options,
    model: llamaRunnerModel(model, options),
    trainData,
    evalData,
    trainExamples: trainSet.length,
    defaultSwitchBlockEvery: 'suggest',
    // Activations of the longest padded batch (core's closed form; tfjs keeps more on its tape: docs/memory.md).
    activationBytes: () =>
      estimateActivationBytes(
        { kind: 'decoder', ...model.config },
        {
          batchSize: options.batchSize,
          seqLength: longest + ((padTo - (longest % padTo)) % padTo),
          dtype: 'float32',
          gradientCheckpointing: options.gradientCheckpointing,
          attention: 'eager',
        },
      ),
    backendLabel,
    callbacks: inputs.callbacks ?? [],
    runSettings: llamaRunSettings(options),
    checkpointModelFiles: async (directory) => {
      await writeModelFiles(directory, modelFiles, { config: true });
      // The template the run trains with, which `chat` on the checkpoint then uses (as on the output dir).
      await writeJson(join(directory, 'badam_llama.json'), { template: template.name });
    },
    io,
  });

  if (!inputs.skipModelSave) {
    if (options.method === 'lora')
      await saveLoraAdapter(model, options.outputDir, options.modelNameOrPath ?? 'built-in tiny Llama');
    else await saveLlama(model, options.outputDir, { dtype: options.bf16 ? 'bfloat16' : 'float32' });
    await writeModelFiles(options.outputDir, { ...modelFiles, dtype: options.bf16 ? 'bfloat16' : 'float32' });
  }
  let predictions: Prediction[] | undefined;
  const metrics: Record<string, number | string> = { ...run.metrics, finetuning_type: options.method };
  if (options.doPredict && validation.length > 0) {
    const predicted = predictExamples(model, tokenizer, template, validation, {
      maxNewTokens: options.maxNewTokens,
      temperature: options.temperature,
      topP: options.topP,
      seed: options.seed,
    });
    predictions = predicted.predictions;
    metrics.predict_exact_match = predicted.exactMatch;
    await writeFileAtomic(join(options.outputDir, 'generated_predictions.jsonl'), [
      predictions.map((p) => `${JSON.stringify(p)}\n`).join(''),
    ]);
    await writeJson(join(options.outputDir, 'predict_results.json'), {
      predict_exact_match: predicted.exactMatch,
      predict_samples: predictions.length,
    });
  }
  await writeRunResults(options.outputDir, metrics);
  return {
    outputDir: options.outputDir,
    metrics,
    model,
    tokenizer,
    template,
    validation,
    predictions,
    estimate: run.estimate,
    stopReason: run.train.stopReason,
  };
}

/**
 * Refuses a `--cutoff_len` longer than the model's position table before any work (it would fail at the
 * first long example, in the middle of training); the default one (1024) is shortened to the table instead.
 */
export function checkCutoffLen(
  options: Pick<TrainOptions, 'cutoffLen' | 'cutoffLenGiven'>,
  model: LlamaForCausalLM,
): void {
  if (options.cutoffLen <= model.maxPositions) return;
  if (!options.cutoffLenGiven) {
    options.cutoffLen = model.maxPositions;
    return;
  }
  throw new UsageError(
    `--cutoff_len ${options.cutoffLen} is more than the ${model.maxPositions} positions this model takes (max_position_embeddings ${model.config.maxPositionEmbeddings}; at most 4096 on tfjs): lower --cutoff_len`,
  );
}

/** badam-llama's own settings that a checkpoint records and a resume must match. */
function llamaRunSettings(options: TrainOptions): RunSettings {
  return {
    stage: options.stage,
    model_name_or_path: options.modelNameOrPath ?? 'built-in tiny Llama',
    dataset: options.dataset ?? 'generated instructions',
    template: options.template,
    cutoff_len: options.cutoffLen,
    include_embedding: options.includeEmbedding,
    include_lm_head: options.includeLmHead,
    ...(options.method === 'lora'
      ? {
          lora_rank: options.loraRank,
          lora_alpha: options.loraAlpha,
          lora_dropout: options.loraDropout,
          lora_target: options.loraTarget === 'all' ? 'all' : options.loraTarget.join(','),
        }
      : {}),
    val_size: options.valSize,
  };
}

/** JSON as Hugging Face writes its results. */
export const writeJson = writeResultsJson;
