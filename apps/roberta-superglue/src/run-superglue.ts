import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import {
  prepareOutputDir,
  type RunIO,
  runCallbacks,
  SafetensorsCheckpointStore,
  writeResultsJson,
} from '@badam/callbacks';
import { createLrSchedule, Trainer, type TrainerCallback } from '@badam/core';
import {
  ByteTokenizer,
  HfTokenizer,
  loadSuperGlue,
  pairFormat,
  TASK_SPECS,
  type TaskExample,
  type TaskSpec,
  type Tokenizer,
} from '@badam/data';
import { EncoderClassifier, encoderConfigFromHf, loadEncoder, saveEncoder } from '@badam/models';
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
import { generatedPairTask, TINY_ROBERTA_CONFIG } from './embedded-task.js';
import { classificationTask, type EncoderRowsBatch, encodeItems, itemDataSource } from './encoder-batches.js';
import { predictionRecords, predictTask, taskMetrics, type ValPrediction } from './evaluate-task.js';
import { estimateRobertaRun } from './memory-estimate.js';
import type { RobertaOptions } from './options.js';

/** Where messages go (the shared shape from @badam/callbacks). */
export type { RunIO };

/** What a run returns. */
export interface RobertaRunResult {
  readonly outputDir: string;
  readonly metrics: Record<string, number | string>;
  readonly predictions: ValPrediction[];
  readonly model: EncoderClassifier;
}

/** Data a caller can hand in instead of files (tests, benchmarks). */
export interface RobertaInputs {
  readonly train?: readonly TaskExample[];
  readonly validation?: readonly TaskExample[];
}

/** The embedded task's spec: two classes, accuracy. */
const EMBEDDED_SPEC: TaskSpec = {
  name: 'rte',
  kind: 'classification',
  numLabels: 2,
  labelNames: ['not_entailment', 'entailment'],
  metrics: ['accuracy'],
};

/**
 * The default SuperGLUE folder: `$BADAM_SHARED_DATA/superglue`, else `shared/data/superglue` beside the
 * repository (found from the working directory upwards), else `../shared/data/superglue`.
 */
export function defaultSuperGlueDir(): string {
  if (process.env.BADAM_SHARED_DATA) return resolve(process.env.BADAM_SHARED_DATA, 'superglue');
  for (let dir = process.cwd(); dirname(dir) !== dir; dir = dirname(dir)) {
    if (existsSync(join(dir, 'pnpm-workspace.yaml')))
      return resolve(dir, '..', 'shared', 'data', 'superglue');
  }
  return resolve('..', 'shared', 'data', 'superglue');
}

async function modelAndTokenizer(
  options: RobertaOptions,
  spec: TaskSpec,
  io: RunIO,
): Promise<{ model: EncoderClassifier; tokenizer: Tokenizer }> {
  const head = spec.kind === 'multiple-choice' ? 'multiple-choice' : 'sequence-classification';
  if (options.model === undefined) {
    const config = encoderConfigFromHf(
      {
        ...TINY_ROBERTA_CONFIG,
        num_labels: spec.numLabels,
        id2label: Object.fromEntries(spec.labelNames.map((l, i) => [String(i), l])),
      },
      { source: 'built-in tiny RoBERTa', head, numLabels: spec.numLabels },
    );
    return { model: new EncoderClassifier(config, { seed: options.seed }), tokenizer: new ByteTokenizer() };
  }
  const [loaded, tokenizer] = await Promise.all([
    loadEncoder(options.model, { head, numLabels: spec.numLabels, seed: options.seed }),
    HfTokenizer.fromDirectory(options.model),
  ]);
  if (loaded.newlyInitialized.length > 0)
    io.log(`badam-roberta: newly initialised (not in the checkpoint): ${loaded.newlyInitialized.join(', ')}`);
  if (loaded.unusedTensors.length > 0)
    io.log(
      `badam-roberta: ${loaded.unusedTensors.length} checkpoint tensor(s) unused (e.g. ${loaded.unusedTensors[0]})`,
    );
  return { model: loaded.model, tokenizer };
}

function optimizerFor(model: EncoderClassifier, options: RobertaOptions, io: RunIO) {
  const clip = options.maxGradNorm > 0 ? options.maxGradNorm : undefined;
  const adamw = () => new AdamW({ learningRate: options.learningRate, weightDecay: options.weightDecay });
  const family = model.config.family;
  const headPrefixes = [
    ...new Set(
      model.headParameterNames.map((n) => (n.includes('.pooler.') ? `${family}.pooler.` : 'classifier.')),
    ),
  ];
  const log = (message: string, level: string) => (level === 'warn' ? io.warn(message) : io.log(message));
  switch (options.method) {
    case 'block': {
      // The paper's partition: one block per encoder layer, and the task head (with the pooler) as the last
      // block — or trained in every block with --train_last_layer. The embeddings are not trained.
      const layers = Array.from({ length: model.config.numLayers }, (_, i) => [
        `${family}.encoder.layer.${i}.`,
      ]);
      return new BlockOptimizer({
        baseOptimizer: adamw(),
        namedParameters: model.namedParameters,
        blockPrefixList: options.trainLastLayer ? layers : [...layers, headPrefixes],
        ...(options.trainLastLayer ? { activeModules: headPrefixes } : {}),
        switchBlockEvery: options.switchEvery,
        switchMode: options.switchMode,
        ...(options.startBlock !== undefined ? { startBlock: options.startBlock } : {}),
        seed: options.seed,
        verbose: 1,
        logFn: log,
        ...(clip !== undefined ? { clipGradNorm: clip } : {}),
      });
    }
    case 'sparse':
      return new BlockOptimizerRatio({
        namedParameters: model.namedParameters,
        updateRatio: options.updateRatio,
        maskMode: options.maskMode,
        switchEvery: options.switchEvery,
        lr: options.learningRate,
        seed: options.seed,
        includeLmHead: true, // the task head
        verbose: 1,
        logFn: log,
      });
    case 'lora': {
      model.addLora(
        { rank: options.loraRank, alpha: options.loraRank * 2, targetModules: ['query', 'value'] },
        options.seed,
      );
      const head = new Set(model.headParameterNames);
      for (const [name, v] of model.namedParameters) v.trainable = name.includes('lora_') || head.has(name);
      return adamw() as BaseOptimizer;
    }
    case 'full':
      for (const [, v] of model.namedParameters) v.trainable = true;
      return adamw() as BaseOptimizer;
  }
}

/**
 * One `badam-roberta` run: the model (a Hugging Face directory, or the built-in tiny RoBERTa), the task's
 * train and validation data (SuperGLUE jsonl, or the generated pair task), the optimizer of the method,
 * the Trainer with progress, logs, plot, checkpoints and Ctrl-C handling; then SuperGLUE's metrics on the
 * validation set, `val_predictions.jsonl`, `all_results.json` and the fine-tuned model in the output dir.
 */
export async function runSuperGlue(
  options: RobertaOptions,
  io: RunIO,
  inputs: RobertaInputs = {},
): Promise<RobertaRunResult> {
  await prepareOutputDir(options.outputDir, {
    overwrite: options.overwriteOutputDir,
    resuming: options.resumeFromCheckpoint !== undefined,
  });
  const backendName = await prepareTfjsBackend(options.tfjsBackend, {
    nativeKernels: options.nativeKernels,
    warn: (m) => io.warn(`badam-roberta: ${m}`),
  });
  const spec = options.taskName === undefined ? EMBEDDED_SPEC : TASK_SPECS[options.taskName];
  const { model, tokenizer } = await modelAndTokenizer(options, spec, io);
  const format = pairFormat(tokenizer, model.config.family);
  const positions =
    model.config.family === 'roberta'
      ? model.config.maxPositionEmbeddings - model.config.padTokenId - 1
      : model.config.maxPositionEmbeddings;
  const maxLength = Math.min(options.maxSeqLength, positions);

  let train = inputs.train;
  let validation = inputs.validation;
  if (train === undefined || validation === undefined) {
    if (options.taskName === undefined) {
      train ??= generatedPairTask(2000, options.seed);
      validation ??= generatedPairTask(200, options.seed + 1000);
    } else {
      const dir = options.dataDir ?? defaultSuperGlueDir();
      train ??= await loadSuperGlue(dir, options.taskName, 'train');
      validation ??= await loadSuperGlue(dir, options.taskName, 'val');
    }
  }
  const trainItems = encodeItems(train, tokenizer, format, maxLength, spec.name === 'record');
  const evalItems = encodeItems(validation, tokenizer, format, maxLength, spec.name === 'record');
  const trainData = itemDataSource(trainItems, options.trainBatchSize, tokenizer.padTokenId, options.seed);
  const evalData = itemDataSource(evalItems, options.evalBatchSize, tokenizer.padTokenId);
  io.log(
    `badam-roberta: ${options.taskName ?? 'embedded pair task'} with ${options.model ?? 'the built-in tiny RoBERTa'} (${model.parameterCount.toLocaleString('en')} parameters), ${train.length} training and ${validation.length} validation examples, ${options.method}, tfjs ${backendName}`,
  );

  const optimizer = optimizerFor(model, options, io);
  const backend = new TfjsTrainerBackend<EncoderRowsBatch>({
    task: classificationTask(model),
    optimizer,
    namedParameters: model.namedParameters,
    ...(options.method !== 'block' && options.maxGradNorm > 0 ? { clipGradNorm: options.maxGradNorm } : {}),
  });
  const maxSteps = options.maxSteps ?? Math.max(1, Math.ceil(options.numTrainEpochs * trainData.length!));
  const store =
    options.saveSteps !== undefined || options.resumeFromCheckpoint !== undefined
      ? new SafetensorsCheckpointStore({ outputDir: options.outputDir, keepLast: 2 })
      : undefined;
  const callbacks: TrainerCallback[] = [
    ...runCallbacks({
      outputDir: options.outputDir,
      loggingSteps: options.loggingSteps,
      plotLoss: options.plotLoss,
      blockSwitchVerbose: options.method === 'block' ? 1 : 0,
      log: io.log,
      warn: io.warn,
      ...(io.stream ? { stream: io.stream } : {}),
    }),
    // Dropout masks follow the step, so resuming from a checkpoint continues the run exactly.
    { onStepBegin: (context) => model.setDropoutStep(context.progress.step) },
  ];
  const trainer = new Trainer<EncoderRowsBatch>({
    backend,
    trainData,
    evalData,
    maxSteps,
    lrSchedule: createLrSchedule({
      type: options.lrSchedulerType,
      learningRate: options.learningRate,
      totalSteps: maxSteps,
      warmupRatio: options.warmupRatio,
    }),
    loggingSteps: options.loggingSteps,
    ...(options.evalEverySteps !== undefined ? { evalSteps: options.evalEverySteps } : {}),
    ...(options.saveSteps !== undefined ? { saveSteps: options.saveSteps } : {}),
    ...(store ? { checkpoints: store } : {}),
    callbacks,
  });
  const resumeFrom =
    options.resumeFromCheckpoint === undefined
      ? undefined
      : await store!.load(options.resumeFromCheckpoint === 'true' ? undefined : options.resumeFromCheckpoint);
  if (resumeFrom)
    io.log(`badam-roberta: resuming from ${resumeFrom.path} (step ${resumeFrom.trainerState.globalStep})`);
  const peak = trackPeakMemory();
  let result: Awaited<ReturnType<typeof trainer.train>>;
  try {
    result = await trainer.train(resumeFrom ? { resumeFrom } : {});
  } finally {
    peak.stop();
  }

  const predictions = predictTask(
    model,
    validation,
    tokenizer,
    format,
    maxLength,
    spec,
    options.evalBatchSize,
  );
  const scores = taskMetrics(spec, validation, predictions);
  const records = predictionRecords(spec, validation, predictions);
  const metrics: Record<string, number | string> = {
    ...result.metrics,
    ...Object.fromEntries(Object.entries(scores).map(([k, v]) => [`eval_${k}`, v])),
    task: options.taskName ?? 'embedded',
    method: options.method,
    tfjs_backend: backendName,
    parameters: model.parameterCount,
    trainable_parameters: model.namedParameters
      .filter(([, v]) => v.trainable)
      .reduce((n, [, v]) => n + v.size, 0),
    peak_memory_bytes: peak.peakBytes(),
  };
  const longest = Math.max(...trainItems.flatMap((item) => item.rows.map((r) => r.inputIds.length)));
  const rowsPerBatch = options.trainBatchSize * (trainItems[0]?.rows.length ?? 1);
  const estimate = estimateRobertaRun(model, options, rowsPerBatch, longest);
  Object.assign(metrics, {
    estimated_memory_bytes: estimate.total,
    estimated_optimizer_bytes: estimate.masters + estimate.gradients + estimate.optimizerState,
    estimated_activations_bytes: estimate.activations,
  });
  await writeFileAtomic(join(options.outputDir, 'val_predictions.jsonl'), [
    records.map((r) => `${JSON.stringify(r)}\n`).join(''),
  ]);
  await writeResultsJson(join(options.outputDir, 'all_results.json'), metrics);
  if (options.method !== 'lora') {
    await saveEncoder(model, options.outputDir);
    if (tokenizer instanceof ByteTokenizer) {
      const { tokenizer: json, config } = tokenizer.toHuggingFace();
      await writeResultsJson(join(options.outputDir, 'tokenizer.json'), json);
      await writeResultsJson(join(options.outputDir, 'tokenizer_config.json'), config);
    }
  }
  optimizer.dispose();
  const summary = Object.entries(scores)
    .map(([k, v]) => `${k} ${(100 * v).toFixed(1)}%`)
    .join(', ');
  io.log(
    `badam-roberta: validation ${summary} (${validation.length} examples); outputs in ${options.outputDir}`,
  );
  return { outputDir: options.outputDir, metrics, predictions: records, model };
}
