import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { boardRunWatcher } from '@badam/board';
import { type RunIO, writeResultsJson } from '@badam/callbacks';
import {
  type DataSource,
  estimateActivationBytes,
  type MemoryEstimate,
  type TrainerCallback,
  UsageError,
} from '@badam/core';
import type { DeviceLlama, ShardedLlama } from '@badam/cuda';
import {
  alpacaExamples,
  ByteTokenizer,
  batchedDataSource,
  type ChatTemplate,
  chatTemplateJinja,
  encodePretraining,
  encodeSupervised,
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
  readLoraAdapterConfig,
  saveLlama,
  saveLoraAdapter,
} from '@badam/models';
import {
  fineTune,
  isDeviceBackend,
  prepareRunBackend,
  prepareRunOutputDir,
  type RankEnvironment,
  type RunnerModel,
  type RunSettings,
  rankEnvironmentOf,
  resolveAutoBackend,
  writeRunResults,
} from '@badam/runner';
import { tfjsBackendModel } from '@badam/tfjs';
import { loadLlamaWithAdapters, modelFolders } from './adapters.js';
import { chooseChatTemplate } from './chat-template-choice.js';
import { type DeviceRunModel, deviceDtype, deviceLlamaRunnerModel, loadDeviceLlama } from './device-model.js';
import { evaluateOnly } from './evaluate-only.js';
import { scratchModelSource } from './from-scratch.js';
import { type ModelFilesSource, writeModelFiles } from './model-files.js';
import { type Prediction, writePredictions } from './predict.js';
import {
  joinShardedRun,
  loadShardedLlama,
  rankIO,
  rankRows,
  type ShardedRun,
  type ShardedRunModel,
  shardedLlamaRunnerModel,
} from './sharded-model.js';
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
  /** Core's memory estimate of the training (undefined with `--do_train false`). */
  readonly estimate: MemoryEstimate | undefined;
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
    tfjsOnly ?? (await tfjsOnlyReason(options)),
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

/** Why this run needs tfjs whatever the machine has (`--backend auto` then picks it), or undefined. */
async function tfjsOnlyReason(options: TrainOptions): Promise<string | undefined> {
  if (options.doPredict) return '--do_predict generates with TensorFlow.js';
  if (!options.doTrain) return '--do_train false evaluates with TensorFlow.js';
  if (options.adapters.length > 0) return '--adapter_name_or_path loads LoRA adapters on TensorFlow.js only';
  const path = options.trainFromScratch ? undefined : options.modelNameOrPath;
  if (path !== undefined && (await readLoraAdapterConfig(path)) !== undefined)
    return `${path} is a LoRA adapter folder, which loads on TensorFlow.js only`;
  return undefined;
}

/**
 * Loads (or builds) the model and tokenizer named by the options: `--model_name_or_path` (a model folder, or
 * a LoRA adapter folder on its base) and `--adapter_name_or_path`'s adapters, merged, except the last with
 * `--finetuning_type lora`, which trains on. `tokenizerDir` is where the tokenizer (and the model's own chat
 * template) comes from.
 */
export async function loadModelAndTokenizer(
  options: TrainOptions,
  io: Pick<RunIO, 'warn'> = console,
): Promise<{
  model: LlamaForCausalLM;
  tokenizer: Tokenizer;
  builtin: boolean;
  tokenizerDir: string | undefined;
}> {
  if (options.trainFromScratch && options.modelNameOrPath !== undefined) {
    if (options.adapters.length > 0)
      throw new UsageError(
        '--adapter_name_or_path loads adapters onto trained weights, and --train_from_scratch has none: drop one',
      );
    const source = await scratchModelSource(options.modelNameOrPath, options.seed);
    io.warn(`badam-llama: ${source.note}`);
    const model = new LlamaForCausalLM(source.config, {
      seed: options.seed,
      initializerRange: source.initializerRange,
    });
    return { model, tokenizer: source.tokenizer, builtin: false, tokenizerDir: source.sourceDir };
  }
  if (options.modelNameOrPath === undefined) {
    if (options.adapters.length > 0)
      throw new UsageError(
        '--adapter_name_or_path needs the base model it was trained on: add --model_name_or_path',
      );
    const model = new LlamaForCausalLM(builtinLlamaConfig(), {
      seed: options.seed,
      initializerRange: BUILTIN_INITIALIZER_RANGE,
    });
    return { model, tokenizer: new ByteTokenizer(), builtin: true, tokenizerDir: undefined };
  }
  const folders = await modelFolders(options.modelNameOrPath, options.adapters);
  const { model, tokenizer } = await loadLlamaWithAdapters(
    folders,
    { keepLast: options.method === 'lora' },
    io.warn,
  );
  if (folders.adapters.length > 0)
    io.warn(
      `badam-llama: LoRA adapter(s) ${folders.adapters.join(', ')} on ${folders.base}: ${options.method === 'lora' ? 'the last trains on, the others are merged' : 'merged into the model'}`,
    );
  return { model, tokenizer, builtin: false, tokenizerDir: folders.tokenizerDir };
}

/**
 * The Llama as the runner kit trains it: BAdam's partition choices, its LoRA adapters, and @badam/tfjs's
 * trainer backend factory bound to the model (its variables and the causal-LM task).
 */
export function llamaRunnerModel(model: LlamaForCausalLM, options: TrainOptions): RunnerModel<PaddedBatch> {
  return {
    kind: 'Llama',
    partition: { includeEmbedding: options.includeEmbedding, includeLmHead: options.includeLmHead },
    // An adapter loaded to train on (--adapter_name_or_path) is the run's LoRA; otherwise new adapters.
    addLora: () => {
      if (model.lora !== undefined) return;
      model.addLora(
        {
          rank: options.loraRank,
          alpha: options.loraAlpha,
          dropout: options.loraDropout,
          targetModules: options.loraTarget,
        },
        options.seed,
      );
    },
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
  const ranks = rankEnvironmentOf();
  if (ranks !== undefined && ranks.worldSize > 1) return runShardedTraining(options, io, ranks);
  const backendLabel = await prepareBackend(options, io);
  if (!inputs.outputDirReady) await prepareRunOutputDir(options, LLAMA_DIALECT, io);
  if (options.bf16 && options.backend === 'tfjs')
    io.warn(
      'badam-llama: --bf16 on tfjs: training stays fp32 (tfjs has no bf16), and so do checkpoints (an exact resume needs the fp32 weights); the saved model is written in bf16',
    );

  const loaded = await loadRunModel(options, io, inputs);
  try {
    if (!options.doTrain)
      return await evaluateOnly(options, io, loaded, await runTemplate(options, inputs, loaded, io));
    return await trainLoaded(options, io, inputs, loaded, backendLabel);
  } catch (error) {
    // A device model this run loaded is freed when the run fails (the caller gets it only on success).
    if (inputs.deviceModel === undefined) loaded.deviceModel?.model.dispose();
    throw error;
  }
}

/**
 * {@link runTraining} as one rank of a run over several processes (torchrun's variables set): the model
 * sharded over the ranks (ZeRO-3 style, @badam/cuda), each rank training on its rows of every global
 * micro-batch (per-device batch x ranks); rank 0 alone prepares the output directory and writes logs,
 * checkpoints, the model and the results. Every rank returns once all have finished.
 */
async function runShardedTraining(
  options: TrainOptions,
  io: RunIO,
  env: RankEnvironment,
): Promise<TrainRunResult> {
  const rio = rankIO(io, env.rank);
  // --backend auto settled first (every rank picks alike); then on cuda each rank takes the GPU of its
  // LOCAL_RANK (or the CPU reference device with --cuda_device cpu); on cpu every rank runs the CPU engine.
  const picked = await resolveAutoBackend(
    options,
    { kind: 'Llama', cuda: true },
    await tfjsOnlyReason(options),
  );
  if (picked !== undefined) rio.log(`badam-llama: ${picked}`);
  if (options.backend === 'cuda' && options.cudaDevice !== 'cpu') options.cudaDevice = env.localRank;
  const backendLabel = await prepareBackend(options, rio);
  const run = await joinShardedRun(options, env);
  const { group } = run;
  if (group.rank === 0) await prepareRunOutputDir(options, LLAMA_DIALECT, rio);
  options.outputDir = group.broadcastJson(options.outputDir);
  const sharded = await loadShardedLlama(options, run, (config) =>
    checkCutoffLen(options, { maxPositions: config.maxPositionEmbeddings, config }),
  );
  try {
    checkCutoffLen(options, { maxPositions: sharded.model.maxPositions, config: sharded.config });
    const loaded: RunModel = {
      config: sharded.config,
      maxPositions: sharded.model.maxPositions,
      tokenizer: sharded.tokenizer,
      builtin: sharded.builtin,
      tokenizerDir: sharded.builtin ? undefined : options.modelNameOrPath,
      runner: shardedLlamaRunnerModel(sharded.model, group, options),
      sharded: { ...sharded, ...run },
    };
    const result = await trainLoaded(options, rio, {}, loaded, `${backendLabel}, ${group.worldSize} ranks`);
    group.close();
    return result;
  } finally {
    sharded.model.dispose();
  }
}

/** The run's chat template: `--template` by name; else the model's own chat_template; else alpaca. */
async function runTemplate(
  options: TrainOptions,
  inputs: RunInputs,
  loaded: Pick<RunModel, 'builtin' | 'tokenizerDir'>,
  io: RunIO,
): Promise<ChatTemplate> {
  return chooseChatTemplate(
    options.template ?? inputs.template,
    loaded.builtin ? undefined : loaded.tokenizerDir,
    loaded.builtin ? 'default' : 'alpaca',
    (message) => io.warn(`badam-llama: ${message}`),
  );
}

/**
 * The run's examples: training ones (`--dataset`, or generated instructions), and validation ones (a set
 * given in code, `--eval_dataset`, or `--val_size` split off the training ones).
 */
export async function loadRunExamples(
  options: TrainOptions,
  inputs: Pick<RunInputs, 'examples' | 'validation'> = {},
): Promise<RunExamples> {
  const load = (dataset: string) =>
    loadInstructionDataset(dataset, options.datasetDir, { maxSamples: options.maxSamples });
  const examples =
    inputs.examples ??
    (options.dataset !== undefined
      ? await load(options.dataset)
      : options.doTrain
        ? alpacaExamples(generatedInstructions(800, 0, options.seed).train)
        : []);
  if (inputs.validation !== undefined)
    return { train: [...examples], validation: [...inputs.validation], sha256: contentHash([examples]) };
  if (options.evalDataset !== undefined) {
    const validation = await load(options.evalDataset);
    return { train: [...examples], validation, sha256: contentHash([examples, validation]) };
  }
  return { ...splitValidation(examples, options.valSize, options.seed), sha256: contentHash([examples]) };
}

/** A run's examples, and the SHA-256 of the data they came from (see {@link contentHash}). */
export interface RunExamples {
  readonly train: InstructionExample[];
  readonly validation: InstructionExample[];
  /** The loaded examples' SHA-256 (with `--eval_dataset`'s after them), which a resume compares. */
  readonly sha256: string;
}

/**
 * Examples tokenized for the run's stage (sft: prompt masked; pt: raw text), saying how many were dropped.
 * Token ids the model has no embedding for (`vocabSize`) are found here, naming the example, not mid-run.
 */
function encodeExamples(
  items: readonly InstructionExample[],
  options: TrainOptions,
  tokenizer: Tokenizer,
  template: ChatTemplate,
  vocabSize: number,
  io: RunIO,
): TokenizedExample[] {
  if (options.stage === 'pt')
    return encodePretraining(items, tokenizer, template, options.cutoffLen, vocabSize);
  const { examples: encoded, dropped } = encodeSupervised(items, tokenizer, template, {
    cutoffLen: options.cutoffLen,
    vocabSize,
  });
  if (dropped > 0)
    io.warn(`badam-llama: ${dropped} example(s) had no response token within cutoff_len and were dropped`);
  return encoded;
}

/** {@link runTraining} once its model is there. */
async function trainLoaded(
  options: TrainOptions,
  io: RunIO,
  inputs: RunInputs,
  loaded: RunModel,
  backendLabel: string,
): Promise<TrainRunResult> {
  const ranks = loaded.sharded?.group;
  const leader = ranks === undefined || ranks.rank === 0;
  const { tokenizer, config } = loaded;
  const template = await runTemplate(options, inputs, loaded, io);
  const data = await runData(options, io, inputs, loaded, template);

  // Checkpoints hold the weights as the backend does (cuda: bf16 / fp16 with --bf16 / --fp16; tfjs: fp32,
  // which exact resume needs); the folder's files make each one loadable as a model (chat, training), with
  // the run's chat template in tokenizer_config.json.
  const checkpointDtype = isDeviceBackend(options.backend) ? deviceDtype(options) : 'float32';
  const modelFiles: ModelFilesSource = {
    config,
    tokenizer,
    sourceDir: loaded.tokenizerDir,
    dtype: checkpointDtype,
    chatTemplate: chatTemplateJinja(template),
  };
  const run = await fineTune<PaddedBatch>({
    dialect: LLAMA_DIALECT,
    options,
    model: loaded.runner,
    trainData: data.trainData,
    evalData: data.evalData,
    trainExamples: data.trainSet.length,
    defaultSwitchBlockEvery: 'suggest',
    // Activations of the longest padded batch (core's closed form; tfjs keeps more on its tape: docs/memory.md).
    activationBytes: () =>
      estimateActivationBytes(
        { kind: 'decoder', ...config },
        {
          // What runs: a batch never holds more than the examples there are.
          batchSize: Math.min(options.batchSize, data.trainSet.length),
          seqLength: data.longestPadded,
          // tfjs computes in fp32 with a [t, t] score matrix; the device in the weights' dtype, flash style.
          dtype:
            isDeviceBackend(options.backend) && checkpointDtype !== 'float32' ? checkpointDtype : 'float32',
          gradientCheckpointing: options.gradientCheckpointing,
          attention: isDeviceBackend(options.backend) ? 'flash' : 'eager',
        },
      ),
    backendLabel,
    callbacks: inputs.callbacks ?? [],
    runSettings: { ...llamaRunSettings(options), dataset_sha256: data.sha256 },
    runWatcher: boardRunWatcher,
    ...(ranks !== undefined ? { distributed: ranks } : {}),
    checkpointWeightsDtype: checkpointDtype,
    checkpointModelFiles: async (directory) => {
      await writeModelFiles(directory, modelFiles, { config: true });
      // A LoRA run's checkpoint is an adapter folder too (chat loads the base from it, then the adapters).
      if (options.method === 'lora' && loaded.model !== undefined)
        await saveLoraAdapter(loaded.model, directory, baseModelName(options));
      // The template the run trains with, which `chat` on the checkpoint then uses (as on the output dir).
      await writeJson(join(directory, 'badam_llama.json'), { template: template.name });
    },
    io,
  });

  if (!inputs.skipModelSave) {
    // Sharded, every rank gathers each weight once; rank 0 then writes them from its memory.
    const gathered = loaded.sharded?.model.gatherWeights();
    if (leader)
      await run.saveModel((directory) => writeRunModel(directory, options, loaded, modelFiles, gathered));
  }
  const metrics: Record<string, number | string> = { ...run.metrics, finetuning_type: options.method };
  let predictions: Prediction[] | undefined;
  if (options.doPredict && data.validation.length > 0 && loaded.model !== undefined) {
    const predicted = await writePredictions(loaded.model, tokenizer, template, data.validation, options);
    predictions = predicted.predictions;
    metrics.predict_exact_match = predicted.exactMatch;
  }
  if (leader) await writeRunResults(options.outputDir, metrics);
  return {
    outputDir: options.outputDir,
    metrics,
    model: loaded.model,
    deviceModel: loaded.deviceModel?.model,
    tokenizer,
    template,
    validation: data.validation,
    predictions,
    estimate: run.estimate,
    stopReason: run.train.stopReason,
  };
}

/** A run's data: the examples it trains and evaluates on, tokenized and batched. */
interface RunData {
  readonly validation: readonly InstructionExample[];
  /** The loaded examples' SHA-256, which a resume compares. */
  readonly sha256: string;
  readonly trainSet: readonly TokenizedExample[];
  readonly trainData: DataSource<PaddedBatch>;
  readonly evalData: DataSource<PaddedBatch> | undefined;
  /** The longest training example's length after padding, for the activation estimate. */
  readonly longestPadded: number;
}

/**
 * The run's examples ({@link loadRunExamples}) tokenized with the template ({@link encodeExamples}) and
 * batched: the training order by `--data_seed` (else `--seed`); with `--eval_strategy epoch`, an evaluation
 * interval of one epoch.
 */
async function runData(
  options: TrainOptions,
  io: RunIO,
  inputs: RunInputs,
  loaded: RunModel,
  template: ChatTemplate,
): Promise<RunData> {
  const { tokenizer, config } = loaded;
  const ranks = loaded.sharded?.group;
  const worldSize = ranks?.worldSize ?? 1;
  /** This rank's rows of global micro-batches (every row in one process). */
  const mine = (source: DataSource<PaddedBatch>) =>
    ranks === undefined ? source : rankRows(source, ranks.rank, ranks.worldSize);
  const { train: trainRaw, validation, sha256 } = await loadRunExamples(options, inputs);
  const encode = (items: readonly InstructionExample[]) =>
    encodeExamples(items, options, tokenizer, template, config.vocabSize, io);
  const trainSet = encode(trainRaw);
  const evalSet = validation.length > 0 ? encode(validation) : [];
  if (trainSet.length === 0)
    throw new UsageError('no training examples left after tokenization: check --dataset and --cutoff_len');
  // A loop, not Math.max(...): a spread of 100k+ lengths overflows the call stack.
  const longest = trainSet.reduce((m, e) => Math.max(m, e.inputIds.length), 0);
  const padTo = longest + ((8 - (longest % 8)) % 8) <= loaded.maxPositions ? 8 : 1;
  const trainData = mine(
    batchedDataSource(trainSet, {
      batchSize: options.batchSize * worldSize,
      padTokenId: tokenizer.padTokenId,
      shuffleSeed: options.dataSeed ?? options.seed,
      groupByLength: options.groupByLength,
      padToMultipleOf: padTo,
    }),
  );
  const evalData =
    evalSet.length > 0
      ? mine(
          batchedDataSource(evalSet, {
            batchSize: options.evalBatchSize * worldSize,
            padTokenId: tokenizer.padTokenId,
          }),
        )
      : undefined;
  if (options.evalStrategy === 'epoch' && evalData !== undefined)
    options.evalSteps = Math.max(1, Math.ceil((trainData.length ?? 1) / options.gradientAccumulationSteps));
  io.log(
    `badam-llama: ${trainSet.length} training and ${evalSet.length} validation examples (${options.stage}, template ${template.name}, cutoff ${options.cutoffLen})`,
  );
  return {
    validation,
    sha256,
    trainSet,
    trainData,
    evalData,
    longestPadded: longest + ((padTo - (longest % padTo)) % padTo),
  };
}

/**
 * The trained model's files: on the device in the weights' own dtype (bf16 / fp16 with --bf16 / --fp16),
 * Hugging Face's layout (sharded, the weights every rank `gathered` into rank 0's memory); on tfjs the LoRA
 * adapter or the whole model; config and tokenizer files beside it.
 */
async function writeRunModel(
  directory: string,
  options: TrainOptions,
  loaded: RunModel,
  modelFiles: ModelFilesSource,
  gathered: ReturnType<ShardedLlama['gatherWeights']> | undefined,
): Promise<void> {
  const { model, deviceModel, sharded } = loaded;
  if (sharded !== undefined && gathered !== undefined) {
    await sharded.model.writeGathered(directory, gathered);
    await writeModelFiles(directory, modelFiles, { config: true });
    return;
  }
  if (deviceModel !== undefined) {
    // config.json as on tfjs; modelFiles' dtype is already the device's.
    await deviceModel.model.save(directory);
    await writeModelFiles(directory, modelFiles, { config: true });
    return;
  }
  const dtype = options.bf16 ? 'bfloat16' : 'float32';
  if (options.method === 'lora') await saveLoraAdapter(model!, directory, baseModelName(options));
  else await saveLlama(model!, directory, { dtype });
  await writeModelFiles(directory, { ...modelFiles, dtype });
}

/** The base model a LoRA adapter names in adapter_config.json: the folder it was loaded from. */
function baseModelName(options: TrainOptions): string {
  return options.modelNameOrPath ?? 'built-in tiny Llama';
}

/** The run's model on its backend, and what the run needs of it whichever backend that is. */
export interface RunModel {
  readonly config: LlamaConfig;
  /** Longest sequence the model takes (tfjs caps its position table at 4096). */
  readonly maxPositions: number;
  readonly tokenizer: Tokenizer;
  readonly builtin: boolean;
  /**
   * Where the tokenizer (and the model's own chat template) was read from: none for the built-in model or a
   * shipped config trained from scratch.
   */
  readonly tokenizerDir: string | undefined;
  readonly runner: RunnerModel<PaddedBatch>;
  /** The tfjs model (`--backend tfjs`). */
  readonly model?: LlamaForCausalLM;
  /** The model on the device (`--backend cuda|cpu`). */
  readonly deviceModel?: Pick<DeviceRunModel, 'model' | 'device'>;
  /** The model sharded over the ranks of a run over several processes. */
  readonly sharded?: ShardedRunModel & ShardedRun;
}

/**
 * The run's model: given in `inputs`, or loaded (built) as the options say; on `--backend cuda|cpu` on the
 * device only, with `--cutoff_len` checked before its weights are read.
 */
async function loadRunModel(options: TrainOptions, io: RunIO, inputs: RunInputs): Promise<RunModel> {
  if (isDeviceBackend(options.backend)) {
    const given = inputs.deviceModel !== undefined && inputs.tokenizer !== undefined;
    if (
      !given &&
      options.modelNameOrPath !== undefined &&
      (await readLoraAdapterConfig(options.modelNameOrPath))
    )
      throw new UsageError(
        `${options.modelNameOrPath} is a LoRA adapter folder, which --backend ${options.backend} does not load: merge it into its base first (badam-llama export), then train the merged folder`,
      );
    const device = given
      ? {
          ...inputs.deviceModel!,
          tokenizer: inputs.tokenizer!,
          builtin: false,
          tokenizerDir: options.modelNameOrPath,
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
      tokenizerDir: device.tokenizerDir,
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
          tokenizerDir: options.modelNameOrPath,
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
    tokenizerDir: loaded.tokenizerDir,
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
 * SHA-256 of the examples a run loads (training, and validation given apart): a resume compares it, so that
 * a dataset whose contents changed at the same path is not trained on as if it were the checkpoint's.
 */
function contentHash(sets: readonly (readonly InstructionExample[])[]): string {
  const hash = createHash('sha256');
  for (const examples of sets)
    for (const example of examples) hash.update(JSON.stringify(example)).update('\n');
  return hash.digest('hex');
}

/** JSON as Hugging Face writes its results. */
export const writeJson = writeResultsJson;
