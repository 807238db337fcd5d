import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { boardRunWatcher } from '@badam/board';
import { type RunIO, writeResultsJson } from '@badam/callbacks';
import { embeddingPrefixOf, estimateActivationBytes, layerPrefixOf } from '@badam/core';
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
import {
  fineTune,
  prepareRunBackend,
  prepareRunOutputDir,
  type RunnerModel,
  writeRunResults,
} from '@badam/runner';
import { writeFileAtomic } from '@badam/safetensors';
import { tfjsBackendModel } from '@badam/tfjs';
import { generatedPairTask, TINY_ROBERTA_CONFIG } from './embedded-task.js';
import { classificationTask, type EncoderRowsBatch, encodeItems, itemDataSource } from './encoder-batches.js';
import { predictionRecords, predictTask, taskMetrics, type ValPrediction } from './evaluate-task.js';
import { ROBERTA_DIALECT, type RobertaOptions } from './options.js';

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
  /**
   * Seed of the built-in model's initialisation (default `--seed`). `compare` keeps it fixed, so every seed
   * of a comparison starts from the same model and `--seed` varies only data order, dropout, LoRA and blocks.
   */
  readonly initSeed?: number;
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
  initSeed: number,
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
    return { model: new EncoderClassifier(config, { seed: initSeed }), tokenizer: new ByteTokenizer() };
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
  const backendLabel = await prepareRunBackend(
    options.backend,
    options,
    { kind: 'RoBERTa' },
    (m) => io.warn(`badam-roberta: ${m}`),
    ROBERTA_DIALECT,
  );
  await prepareRunOutputDir(options, ROBERTA_DIALECT, io);
  const spec = options.taskName === undefined ? EMBEDDED_SPEC : TASK_SPECS[options.taskName];
  const { model, tokenizer } = await modelAndTokenizer(options, spec, io, inputs.initSeed ?? options.seed);
  const format = pairFormat(tokenizer, model.config.family);
  const positions =
    model.config.family === 'roberta'
      ? model.config.maxPositionEmbeddings - model.config.padTokenId - 1
      : model.config.maxPositionEmbeddings;
  const maxLength = Math.min(options.maxSeqLength, positions);
  if (maxLength < options.maxSeqLength)
    io.warn(
      `badam-roberta: --max_seq_length ${options.maxSeqLength} is more than the model's ${positions} positions: rows are cut at ${positions}`,
    );

  const { train, validation } = await taskExamples(options, inputs);
  const { vocabSize } = model.config;
  const trainItems = encodeItems(train, tokenizer, format, maxLength, spec.name === 'record', vocabSize);
  const evalItems = encodeItems(validation, tokenizer, format, maxLength, spec.name === 'record', vocabSize);
  const trainData = itemDataSource(trainItems, options.batchSize, tokenizer.padTokenId, options.seed);
  const evalData = itemDataSource(evalItems, options.evalBatchSize, tokenizer.padTokenId);
  io.log(
    `badam-roberta: ${options.taskName ?? 'embedded pair task'} with ${options.model ?? 'the built-in tiny RoBERTa'} (${model.parameterCount.toLocaleString('en')} parameters), ${train.length} training and ${validation.length} validation examples, ${options.method}, ${backendLabel}`,
  );

  // What runs: a batch never holds more than the examples there are.
  const rowsPerBatch = Math.min(options.batchSize, trainItems.length) * (trainItems[0]?.rows.length ?? 1);
  const run = await fineTune<EncoderRowsBatch>({
    dialect: ROBERTA_DIALECT,
    options,
    model: encoderRunnerModel(model, options),
    trainData,
    evalData,
    trainExamples: train.length,
    defaultSwitchBlockEvery: 100,
    activationBytes: () =>
      estimateActivationBytes(
        { kind: 'encoder', ...model.config },
        {
          batchSize: rowsPerBatch,
          seqLength: trainItems.reduce(
            (m, item) => item.rows.reduce((n, r) => Math.max(n, r.inputIds.length), m),
            0,
          ),
          dtype: 'float32',
          attention: 'eager',
        },
      ),
    backendLabel,
    // Dropout masks follow the step, so resuming from a checkpoint continues the run exactly.
    callbacks: [{ onStepBegin: (context) => model.setDropoutStep(context.progress.step) }],
    runSettings: {
      task_name: options.taskName ?? 'embedded',
      hf_pretrained_model_name: options.model ?? 'built-in tiny RoBERTa',
      data_dir: options.taskName === undefined ? undefined : (options.dataDir ?? 'default'),
      train_last_layer: options.trainLastLayer,
      max_seq_length: options.maxSeqLength,
      lora_rank: options.loraRank,
      // A data file whose contents changed at the same path is another run's data.
      data_dir_sha256: createHash('sha256')
        .update(JSON.stringify([train, validation]))
        .digest('hex'),
    },
    runWatcher: boardRunWatcher,
    io,
  });

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
    ...run.metrics,
    ...Object.fromEntries(Object.entries(scores).map(([k, v]) => [`eval_${k}`, v])),
    task: options.taskName ?? 'embedded',
    method: options.method,
  };
  await writeFileAtomic(join(options.outputDir, 'val_predictions.jsonl'), [
    records.map((r) => `${JSON.stringify(r)}\n`).join(''),
  ]);
  await writeRunResults(options.outputDir, metrics);
  if (options.method !== 'lora')
    await run.saveModel((directory) => writeRunModel(directory, model, tokenizer));
  const summary = Object.entries(scores)
    .map(([k, v]) => `${k} ${(100 * v).toFixed(1)}%`)
    .join(', ');
  io.log(
    `badam-roberta: validation ${summary} (${validation.length} examples); outputs in ${options.outputDir}`,
  );
  return { outputDir: options.outputDir, metrics, predictions: records, model };
}

/** The task's training and validation examples: given, the generated pair task, or SuperGLUE's files. */
async function taskExamples(
  options: RobertaOptions,
  inputs: RobertaInputs,
): Promise<{ train: readonly TaskExample[]; validation: readonly TaskExample[] }> {
  let { train, validation } = inputs;
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
  return { train, validation };
}

/** The fine-tuned encoder's files, and the byte tokenizer's so that the folder loads as a model. */
async function writeRunModel(
  directory: string,
  model: EncoderClassifier,
  tokenizer: Tokenizer,
): Promise<void> {
  await saveEncoder(model, directory);
  if (tokenizer instanceof ByteTokenizer) {
    const { tokenizer: json, config } = tokenizer.toHuggingFace();
    await writeResultsJson(join(directory, 'tokenizer.json'), json);
    await writeResultsJson(join(directory, 'tokenizer_config.json'), config);
  }
}

/**
 * The encoder as the runner kit trains it. BAdam's partition is core's: one block per encoder layer, and
 * the task head (pooler and classifier: the parameters outside the layers and embeddings) as the last block,
 * or trained in every block with --train_last_layer. LoRA adapts query and value and trains the head too.
 * It trains on @badam/tfjs, whose trainer backend factory is bound to the model here.
 */
export function encoderRunnerModel(
  model: EncoderClassifier,
  options: RobertaOptions,
): RunnerModel<EncoderRowsBatch> {
  // The head: what is neither in an encoder layer nor an embedding, by core's parameter roles.
  const head = model.namedParameters
    .map(([name]) => name)
    .filter((name) => layerPrefixOf(name) === undefined && embeddingPrefixOf(name) === undefined);
  const headInEveryBlock =
    options.method === 'lora' || (options.method === 'block' && options.trainLastLayer);
  return {
    kind: model.config.family === 'roberta' ? 'RoBERTa' : 'BERT',
    partition: {
      includeLmHead: !headInEveryBlock,
      ...(headInEveryBlock ? { activeModules: head } : {}),
    },
    addLora: () =>
      model.addLora(
        { rank: options.loraRank, alpha: options.loraRank * 2, targetModules: ['query', 'value'] },
        options.seed,
      ),
    ...tfjsBackendModel({ namedParameters: () => model.namedParameters, task: classificationTask(model) }),
  };
}
