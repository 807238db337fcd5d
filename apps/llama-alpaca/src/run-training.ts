import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { boardRunWatcher } from '@badam/board';
import { type RunIO, writeResultsJson } from '@badam/callbacks';
import { estimateActivationBytes, type MemoryEstimate, type TrainerCallback, UsageError } from '@badam/core';
import type { DeviceLlama } from '@badam/cuda';
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
import { BUILTIN_INITIALIZER_RANGE, builtinLlamaConfig, generatedInstructions } from '@badam/embedded';
import {
  causalLmTask,
  type LlamaConfig,
  LlamaForCausalLM,
  loadLlama,
  saveLlama,
  saveLoraAdapter,
} from '@badam/models';
import {
  fineTune,
  isDeviceBackend,
  prepareRunBackend,
  prepareRunOutputDir,
  type RunnerModel,
  type RunSettings,
  resolveAutoBackend,
  saveTrainedModel,
  writeRunResults,
} from '@badam/runner';
import { writeFileAtomic } from '@badam/safetensors';
import { tfjsBackendModel } from '@badam/tfjs';
import { chooseChatTemplate } from './chat-template-choice.js';
import { type DeviceRunModel, deviceLlamaRunnerModel, loadDeviceLlama } from './device-model.js';
import { scratchModelSource } from './from-scratch.js';
import { type ModelFilesSource, writeModelFiles } from './model-files.js';
import { type Prediction, predictExamples } from './predict.js';
import { LLAMA_DIALECT, type TrainOptions } from './train-options.js';

/** Where messages go (the shared shape from @badam/callbacks). */
export type { RunIO };

/** What a training run produced. */
export interface TrainRunResult {
  readonly outputDir: string;
  /** Hugging Face-style results: train_loss, train_runtime, eval_loss, peak memory... */
  readonly metrics: Record<string, number | string>;
  /** The trained model on tfjs (`--backend tfjs`). */
  readonly model: LlamaForCausalLM | undefined;
  /** The trained model on @badam/cuda's device (`--backend cuda|cpu`); the caller disposes it. */
  readonly deviceModel: DeviceLlama | undefined;
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
  /** The model on the device, for `--backend cuda|cpu` (with `tokenizer`); stays the caller's. */
  deviceModel?: Pick<DeviceRunModel, 'model' | 'device' | 'config'>;
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
 * multiply) before any work is done. `--backend auto` (the default) is settled first and the choice said:
 * a GPU, else the CPU engine, else (for methods only tfjs trains, or `tfjsOnly`: why this run needs tfjs)
 * tfjs. Returns a label such as `tfjs wasm + native avx512 x2` or `cpu engine avx512-bf16 x2`.
 */
export async function prepareBackend(options: TrainOptions, io: RunIO, tfjsOnly?: string): Promise<string> {
  const picked = await resolveAutoBackend(
    options,
    { kind: 'Llama', cuda: true },
    tfjsOnly ?? (options.doPredict ? '--do_predict generates with TensorFlow.js' : undefined),
  );
  if (picked !== undefined) io.log(`badam-llama: ${picked}`);
  const label = await prepareRunBackend(
    options.backend,
    options,
    { kind: 'Llama', cuda: true },
    (m) => io.warn(`badam-llama: ${m}`),
    LLAMA_DIALECT,
  );
  io.log(`badam-llama: backend ${label}`);
  return label;
}

/** Loads (or builds) the model and tokenizer named by the options. */
export async function loadModelAndTokenizer(
  options: TrainOptions,
  io: Pick<RunIO, 'warn'> = console,
): Promise<{
  model: LlamaForCausalLM;
  tokenizer: Tokenizer;
  builtin: boolean;
  sourceDir: string | undefined;
}> {
  if (options.trainFromScratch && options.modelNameOrPath !== undefined) {
    const source = await scratchModelSource(options.modelNameOrPath, options.seed);
    io.warn(`badam-llama: ${source.note}`);
    const model = new LlamaForCausalLM(source.config, {
      seed: options.seed,
      initializerRange: source.initializerRange,
    });
    return { model, tokenizer: source.tokenizer, builtin: false, sourceDir: source.sourceDir };
  }
  if (options.modelNameOrPath === undefined) {
    const model = new LlamaForCausalLM(builtinLlamaConfig(), {
      seed: options.seed,
      initializerRange: BUILTIN_INITIALIZER_RANGE,
    });
    return { model, tokenizer: new ByteTokenizer(), builtin: true, sourceDir: undefined };
  }
  const { model, unusedTensors } = await loadLlama(options.modelNameOrPath);
  if (unusedTensors.length > 0) {
    io.warn(
      `badam-llama: ${unusedTensors.length} tensor(s) of the checkpoint are not used: ${unusedTensors.slice(0, 3).join(', ')}...`,
    );
  }
  return {
    model,
    tokenizer: await HfTokenizer.fromDirectory(options.modelNameOrPath),
    builtin: false,
    sourceDir: options.modelNameOrPath,
  };
}

/**
 * The Llama as the runner kit trains it: BAdam's partition choices, its LoRA adapters, and @badam/tfjs's
 * trainer backend factory bound to the model (its variables and the causal-LM task).
 */
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
    ...tfjsBackendModel({ namedParameters: () => model.namedParameters, task: causalLmTask(model) }),
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
  if (options.bf16 && options.backend === 'tfjs')
    io.warn(
      'badam-llama: --bf16 on tfjs: training stays fp32 (tfjs has no bf16); the saved model is written in bf16',
    );

  const loaded = await loadRunModel(options, io, inputs);
  try {
    return await trainLoaded(options, io, inputs, loaded, backendLabel);
  } catch (error) {
    // A device model this run loaded is freed when the run fails (the caller gets it only on success).
    if (inputs.deviceModel === undefined) loaded.deviceModel?.model.dispose();
    throw error;
  }
}

/** {@link runTraining} once its model is there. */
async function trainLoaded(
  options: TrainOptions,
  io: RunIO,
  inputs: RunInputs,
  loaded: RunModel,
  backendLabel: string,
): Promise<TrainRunResult> {
  const { tokenizer, config } = loaded;
  // --template by name; else the model's own chat_template (tokenizer_config.json); else alpaca.
  const template = await chooseChatTemplate(
    options.template ?? inputs.template,
    loaded.sourceDir,
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
  // Token ids the model has no embedding for are found here, naming the example, not mid-run.
  const vocabSize = config.vocabSize;
  const encode = (items: readonly InstructionExample[]): TokenizedExample[] => {
    if (options.stage === 'pt')
      return encodePretraining(items, tokenizer, template, options.cutoffLen, vocabSize);
    const { examples: encoded, dropped } = encodeSupervised(items, tokenizer, template, {
      cutoffLen: options.cutoffLen,
      vocabSize,
    });
    if (dropped > 0)
      io.warn(`badam-llama: ${dropped} example(s) had no response token within cutoff_len and were dropped`);
    return encoded;
  };
  const trainSet = encode(trainRaw);
  const evalSet = validation.length > 0 ? encode(validation) : [];
  if (trainSet.length === 0)
    throw new UsageError('no training examples left after tokenization: check --dataset and --cutoff_len');
  // A loop, not Math.max(...): a spread of 100k+ lengths overflows the call stack.
  const longest = trainSet.reduce((m, e) => Math.max(m, e.inputIds.length), 0);
  const padTo = longest + ((8 - (longest % 8)) % 8) <= loaded.maxPositions ? 8 : 1;
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
    config,
    tokenizer,
    sourceDir: loaded.sourceDir,
    dtype: 'float32',
  };
  const run = await fineTune<PaddedBatch>({
    dialect: LLAMA_DIALECT,
    options,
    model: loaded.runner,
    trainData,
    evalData,
    trainExamples: trainSet.length,
    defaultSwitchBlockEvery: 'suggest',
    // Activations of the longest padded batch (core's closed form; tfjs keeps more on its tape: docs/memory.md).
    activationBytes: () =>
      estimateActivationBytes(
        { kind: 'decoder', ...config },
        {
          // What runs: a batch never holds more than the examples there are.
          batchSize: Math.min(options.batchSize, trainSet.length),
          seqLength: longest + ((padTo - (longest % padTo)) % padTo),
          // tfjs computes in fp32 with a [t, t] score matrix; the device in the weights' dtype, flash style.
          dtype: isDeviceBackend(options.backend) && options.bf16 ? 'bfloat16' : 'float32',
          gradientCheckpointing: options.gradientCheckpointing,
          attention: isDeviceBackend(options.backend) ? 'flash' : 'eager',
        },
      ),
    backendLabel,
    callbacks: inputs.callbacks ?? [],
    runSettings: { ...llamaRunSettings(options), dataset_sha256: contentHash(examples) },
    runWatcher: boardRunWatcher,
    checkpointModelFiles: async (directory) => {
      await writeModelFiles(directory, modelFiles, { config: true });
      // The template the run trains with, which `chat` on the checkpoint then uses (as on the output dir).
      await writeJson(join(directory, 'badam_llama.json'), { template: template.name });
    },
    io,
  });

  if (!inputs.skipModelSave) {
    const dtype = options.bf16 ? 'bfloat16' : 'float32';
    const { model, deviceModel } = loaded;
    // A full disk here would lose the trained weights: saveTrainedModel keeps them (a rescue directory, retries).
    await saveTrainedModel({
      outputDir: options.outputDir,
      dialect: LLAMA_DIALECT,
      io,
      lastCheckpoint: run.train.lastCheckpoint,
      write: async (directory) => {
        if (deviceModel !== undefined) {
          // In the weights' own dtype (bf16 with --bf16), Hugging Face's layout; config.json as on tfjs.
          await deviceModel.model.save(directory);
          await writeModelFiles(directory, { ...modelFiles, dtype }, { config: true });
        } else {
          if (options.method === 'lora')
            await saveLoraAdapter(model!, directory, options.modelNameOrPath ?? 'built-in tiny Llama');
          else await saveLlama(model!, directory, { dtype });
          await writeModelFiles(directory, { ...modelFiles, dtype });
        }
      },
    });
  }
  let predictions: Prediction[] | undefined;
  const metrics: Record<string, number | string> = { ...run.metrics, finetuning_type: options.method };
  if (options.doPredict && validation.length > 0 && loaded.model !== undefined) {
    const predicted = predictExamples(loaded.model, tokenizer, template, validation, {
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
    model: loaded.model,
    deviceModel: loaded.deviceModel?.model,
    tokenizer,
    template,
    validation,
    predictions,
    estimate: run.estimate,
    stopReason: run.train.stopReason,
  };
}

/** The run's model on its backend, and what the run needs of it whichever backend that is. */
interface RunModel {
  readonly config: LlamaConfig;
  /** Longest sequence the model takes (tfjs caps its position table at 4096). */
  readonly maxPositions: number;
  readonly tokenizer: Tokenizer;
  readonly builtin: boolean;
  /** The folder whose tokenizer files and chat template the run reads (none: built in, or a shipped config). */
  readonly sourceDir: string | undefined;
  readonly runner: RunnerModel<PaddedBatch>;
  /** The tfjs model (`--backend tfjs`). */
  readonly model?: LlamaForCausalLM;
  /** The model on the device (`--backend cuda|cpu`). */
  readonly deviceModel?: Pick<DeviceRunModel, 'model' | 'device'>;
}

/**
 * The run's model: given in `inputs`, or loaded (built) as the options say; on `--backend cuda|cpu` on the
 * device only, with `--cutoff_len` checked before its weights are read.
 */
async function loadRunModel(options: TrainOptions, io: RunIO, inputs: RunInputs): Promise<RunModel> {
  if (isDeviceBackend(options.backend)) {
    const given = inputs.deviceModel !== undefined && inputs.tokenizer !== undefined;
    const device = given
      ? {
          ...inputs.deviceModel!,
          tokenizer: inputs.tokenizer!,
          builtin: false,
          sourceDir: options.modelNameOrPath,
        }
      : await loadDeviceLlama(options, io, (config) =>
          checkCutoffLen(options, { maxPositions: config.maxPositionEmbeddings, config }),
        );
    const { config } = device;
    const maxPositions = device.model.maxPositions;
    checkCutoffLen(options, { maxPositions, config });
    return {
      config,
      maxPositions,
      tokenizer: device.tokenizer,
      builtin: device.builtin,
      sourceDir: device.sourceDir,
      runner: deviceLlamaRunnerModel(device, options),
      deviceModel: device,
    };
  }
  const loaded =
    inputs.model !== undefined && inputs.tokenizer !== undefined
      ? {
          model: inputs.model,
          tokenizer: inputs.tokenizer,
          builtin: false,
          sourceDir: options.modelNameOrPath,
        }
      : await loadModelAndTokenizer(options, io);
  const { model } = loaded;
  checkCutoffLen(options, model);
  model.gradientCheckpointing = options.gradientCheckpointing;
  return {
    config: model.config,
    maxPositions: model.maxPositions,
    tokenizer: loaded.tokenizer,
    builtin: loaded.builtin,
    sourceDir: loaded.sourceDir,
    runner: llamaRunnerModel(model, options),
    model,
  };
}

/**
 * Refuses a `--cutoff_len` longer than the model's position table before any work (it would fail at the
 * first long example, in the middle of training); the default one (1024) is shortened to the table instead.
 */
export function checkCutoffLen(
  options: Pick<TrainOptions, 'cutoffLen' | 'cutoffLenGiven'>,
  model: { readonly maxPositions: number; readonly config: Pick<LlamaConfig, 'maxPositionEmbeddings'> },
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
    // Recorded only when on, so that checkpoints written before the flag existed still resume.
    train_from_scratch: options.trainFromScratch ? true : undefined,
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

/**
 * SHA-256 of the examples a run trains and evaluates on: a resume compares it, so that a dataset whose
 * contents changed at the same path is not trained on as if it were the checkpoint's.
 */
function contentHash(examples: readonly InstructionExample[]): string {
  const hash = createHash('sha256');
  for (const example of examples) hash.update(JSON.stringify(example)).update('\n');
  return hash.digest('hex');
}

/** JSON as Hugging Face writes its results. */
export const writeJson = writeResultsJson;
