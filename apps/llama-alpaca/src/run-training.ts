import { join } from 'node:path';
import {
  prepareOutputDir,
  type RunIO,
  runCallbacks,
  SafetensorsCheckpointStore,
  writeResultsJson,
} from '@badam/callbacks';
import {
  createLrSchedule,
  type MemoryEstimate,
  suggestSwitchBlockEvery,
  Trainer,
  type TrainerCallback,
  UsageError,
} from '@badam/core';
import {
  alpacaExamples,
  ByteTokenizer,
  batchedDataSource,
  type ChatTemplate,
  chatTemplate,
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
import { writeFileAtomic } from '@badam/safetensors';
import {
  AdamW,
  type BaseOptimizer,
  BlockOptimizer,
  BlockOptimizerRatio,
  prepareTfjsBackend,
  TfjsTrainerBackend,
  trackPeakMemory,
} from '@badam/tfjs';
import { generatedInstructions, TINY_LLAMA_CONFIG } from './embedded-data.js';
import { estimateRunMemory } from './memory-report.js';
import { type Prediction, predictExamples } from './predict.js';
import type { TrainOptions } from './train-options.js';
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
}

/**
 * Activates the tfjs backend and, unless disabled, @badam/native's matrix multiply on it. Returns a label
 * such as `wasm + native avx512 x2`.
 */
export async function prepareBackend(options: TrainOptions, io: RunIO): Promise<string> {
  const label = await prepareTfjsBackend(options.tfjsBackend, {
    nativeKernels: options.nativeKernels,
    warn: (m) => io.warn(`badam-llama: ${m}`),
  });
  io.log(`badam-llama: tfjs backend ${label}`);
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

function optimizerFor(model: LlamaForCausalLM, options: TrainOptions, trainExamples: number, io: RunIO) {
  const clip = options.maxGradNorm > 0 ? options.maxGradNorm : undefined;
  const adamw = () => new AdamW({ learningRate: options.learningRate, weightDecay: options.weightDecay });
  switch (options.finetuningType) {
    case 'block': {
      const probe = new BlockOptimizer({
        baseOptimizer: adamw(),
        namedParameters: model.namedParameters,
        includeEmbedding: options.includeEmbedding,
        includeLmHead: options.includeLmHead,
        verbose: 0,
      });
      const blocks = probe.engine.partition.blocks.length;
      probe.dispose();
      const k =
        options.switchBlockEvery ??
        suggestSwitchBlockEvery({
          examples: trainExamples,
          effectiveBatchSize: options.batchSize * options.gradientAccumulationSteps,
          blocks,
        });
      if (options.switchBlockEvery === undefined)
        io.log(
          `badam-llama: --switch_block_every not set: using ${k} = min(max(round(n / (B * D)), 50), 100)`,
        );
      const optimizer = new BlockOptimizer({
        baseOptimizer: adamw(),
        namedParameters: model.namedParameters,
        switchBlockEvery: k,
        switchMode: options.switchMode,
        ...(options.startBlock !== undefined ? { startBlock: options.startBlock } : {}),
        includeEmbedding: options.includeEmbedding,
        includeLmHead: options.includeLmHead,
        verbose: options.badamVerbose,
        seed: options.seed,
        gradientAccumulationSteps: options.gradientAccumulationSteps,
        logFn: (message, level) => (level === 'warn' ? io.warn(message) : io.log(message)),
        ...(clip !== undefined ? { clipGradNorm: clip } : {}),
      });
      return {
        optimizer,
        blocks: optimizer.engine.partition.blocks.map((b) => [
          ...b.trainableNames,
          ...optimizer.engine.partition.activeModuleNames,
        ]),
      };
    }
    case 'sparse':
      return {
        optimizer: new BlockOptimizerRatio({
          namedParameters: model.namedParameters,
          updateRatio: options.updateRatio,
          maskMode: options.maskMode,
          switchEvery: options.switchBlockEvery ?? 100,
          lr: options.learningRate,
          seed: options.seed,
          includeEmbedding: options.includeEmbedding,
          includeLmHead: options.includeLmHead,
          verbose: options.badamVerbose >= 1 ? 1 : 0,
          logFn: (message, level) => (level === 'warn' ? io.warn(message) : io.log(message)),
        }),
        blocks: undefined,
      };
    case 'lora': {
      model.addLora(
        {
          rank: options.loraRank,
          alpha: options.loraAlpha,
          dropout: options.loraDropout,
          targetModules: options.loraTarget,
        },
        options.seed,
      );
      for (const [name, variable] of model.namedParameters) variable.trainable = name.includes('lora_');
      return { optimizer: adamw() as BaseOptimizer, blocks: undefined };
    }
    case 'full':
      for (const [, variable] of model.namedParameters) variable.trainable = true;
      return { optimizer: adamw() as BaseOptimizer, blocks: undefined };
  }
}

function toRecords(
  examples: readonly { instruction: string; input: string; output: string }[],
): InstructionExample[] {
  return alpacaExamples(examples);
}

/**
 * One training run of `badam-llama`: model, tokenizer and data as the options say, the optimizer of the
 * finetuning type on the tfjs backend, the Trainer with progress, logs, plots, checkpoints and Ctrl-C
 * handling, then the model, results and (with --do_predict) predictions written to the output directory.
 */
export async function runTraining(
  options: TrainOptions,
  io: RunIO,
  inputs: RunInputs = {},
): Promise<TrainRunResult> {
  await prepareOutputDir(options.outputDir, {
    overwrite: options.overwriteOutputDir,
    resuming: options.resumeFromCheckpoint !== undefined,
  });
  const backendName = await prepareBackend(options, io);
  if (options.bf16)
    io.warn(
      'badam-llama: --bf16 on tfjs: training stays fp32 (tfjs has no bf16); the saved model is written in bf16',
    );

  const loaded =
    inputs.model !== undefined && inputs.tokenizer !== undefined
      ? { model: inputs.model, tokenizer: inputs.tokenizer, builtin: false }
      : await loadModelAndTokenizer(options, io);
  const { model, tokenizer } = loaded;
  model.gradientCheckpointing = options.gradientCheckpointing;
  const template = chatTemplate(
    options.template ?? inputs.template ?? (loaded.builtin ? 'default' : 'alpaca'),
  );

  const examples =
    inputs.examples ??
    (options.dataset !== undefined
      ? await loadInstructionDataset(options.dataset, options.datasetDir)
      : toRecords(generatedInstructions(800, 0, options.seed).train));
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
  io.log(
    `badam-llama: ${trainSet.length} training and ${evalSet.length} validation examples (${options.stage}, template ${template.name}, cutoff ${options.cutoffLen})`,
  );

  const { optimizer, blocks } = optimizerFor(model, options, trainSet.length, io);
  const backend = new TfjsTrainerBackend<PaddedBatch>({
    task: causalLmTask(model),
    optimizer,
    namedParameters: model.namedParameters,
    gradientAccumulationSteps: options.gradientAccumulationSteps,
    ...(options.finetuningType !== 'block' && options.maxGradNorm > 0
      ? { clipGradNorm: options.maxGradNorm }
      : {}),
  });
  const maxSteps =
    options.maxSteps ??
    Math.max(1, Math.ceil((options.numTrainEpochs * trainData.length!) / options.gradientAccumulationSteps));
  const store =
    options.saveSteps !== undefined || options.resumeFromCheckpoint !== undefined
      ? new SafetensorsCheckpointStore({ outputDir: options.outputDir, keepLast: options.saveTotalLimit })
      : undefined;
  const callbacks: TrainerCallback[] = [
    ...runCallbacks({
      outputDir: options.outputDir,
      loggingSteps: options.loggingSteps,
      plotLoss: options.plotLoss,
      blockSwitchVerbose: options.finetuningType === 'block' ? options.badamVerbose : 0,
      log: io.log,
      warn: io.warn,
      ...(io.stream ? { stream: io.stream } : {}),
    }),
    ...(inputs.callbacks ?? []),
  ];
  const trainer = new Trainer<PaddedBatch>({
    backend,
    trainData,
    ...(evalData ? { evalData } : {}),
    maxSteps,
    lrSchedule: createLrSchedule({
      type: options.lrSchedulerType,
      learningRate: options.learningRate,
      totalSteps: maxSteps,
      ...(options.warmupSteps !== undefined
        ? { warmupSteps: options.warmupSteps }
        : { warmupRatio: options.warmupRatio }),
    }),
    loggingSteps: options.loggingSteps,
    ...(options.evalSteps !== undefined ? { evalSteps: options.evalSteps } : {}),
    ...(options.saveSteps !== undefined ? { saveSteps: options.saveSteps } : {}),
    ...(store ? { checkpoints: store } : {}),
    callbacks,
  });
  const resumeFrom =
    options.resumeFromCheckpoint === undefined
      ? undefined
      : await store!.load(options.resumeFromCheckpoint === 'true' ? undefined : options.resumeFromCheckpoint);
  if (resumeFrom)
    io.log(`badam-llama: resuming from ${resumeFrom.path} (step ${resumeFrom.trainerState.globalStep})`);

  const peak = trackPeakMemory();
  let result: Awaited<ReturnType<typeof trainer.train>>;
  try {
    result = await trainer.train(resumeFrom ? { resumeFrom } : {});
  } finally {
    peak.stop();
  }
  const estimate = estimateRunMemory(model, options, longest + ((padTo - (longest % padTo)) % padTo), blocks);
  const trainable = model.namedParameters.filter(([, v]) => v.trainable).reduce((n, [, v]) => n + v.size, 0);

  if (!inputs.skipModelSave) {
    if (options.finetuningType === 'lora')
      await saveLoraAdapter(model, options.outputDir, options.modelNameOrPath ?? 'built-in tiny Llama');
    else await saveLlama(model, options.outputDir, { dtype: options.bf16 ? 'bfloat16' : 'float32' });
    await saveTokenizer(tokenizer, options);
  }
  let predictions: Prediction[] | undefined;
  const metrics: Record<string, number | string> = {
    ...result.metrics,
    finetuning_type: options.finetuningType,
    tfjs_backend: backendName,
    parameters: model.parameterCount,
    peak_memory_bytes: peak.peakBytes(),
    estimated_memory_bytes: estimate.total,
    estimated_weights_bytes: estimate.weights,
    estimated_gradients_bytes: estimate.gradients,
    estimated_optimizer_bytes: estimate.optimizerState,
    estimated_activations_bytes: estimate.activations,
  };
  if (options.finetuningType === 'block')
    metrics.trained_parameters_per_block = Math.max(...(blocks ?? [[]]).map((b) => b.length));
  else metrics.trainable_parameters = trainable;
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
  const pick = (prefix: string) =>
    Object.fromEntries(Object.entries(metrics).filter(([k]) => k.startsWith(prefix) || k === 'epoch'));
  await writeJson(join(options.outputDir, 'all_results.json'), metrics);
  await writeJson(join(options.outputDir, 'train_results.json'), pick('train_'));
  if (metrics.eval_loss !== undefined)
    await writeJson(join(options.outputDir, 'eval_results.json'), pick('eval_'));
  if (options.finetuningType === 'block' || options.finetuningType === 'sparse')
    (optimizer as BlockOptimizer | BlockOptimizerRatio).dispose();
  else (optimizer as BaseOptimizer).dispose();
  return {
    outputDir: options.outputDir,
    metrics,
    model,
    tokenizer,
    template,
    validation,
    predictions,
    estimate,
    stopReason: result.stopReason,
  };
}

async function saveTokenizer(tokenizer: Tokenizer, options: TrainOptions): Promise<void> {
  if (tokenizer instanceof ByteTokenizer) {
    const { tokenizer: json, config } = tokenizer.toHuggingFace();
    await writeJson(join(options.outputDir, 'tokenizer.json'), json);
    await writeJson(join(options.outputDir, 'tokenizer_config.json'), config);
    return;
  }
  if (options.modelNameOrPath !== undefined) {
    const { readFile } = await import('node:fs/promises');
    for (const file of [
      'tokenizer.json',
      'tokenizer_config.json',
      'special_tokens_map.json',
      'generation_config.json',
    ]) {
      try {
        await writeFileAtomic(join(options.outputDir, file), [
          await readFile(join(options.modelNameOrPath, file)),
        ]);
      } catch {
        // optional files
      }
    }
  }
}

/** JSON as Hugging Face writes its results. */
export const writeJson = writeResultsJson;
