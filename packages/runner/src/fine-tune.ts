import { join } from 'node:path';
import {
  BestModelCallback,
  defaultLoggingDir,
  formatMemory,
  HF_TRAINER_STATE,
  type HfTrainingArguments,
  huggingFaceTrainerState,
  InterruptCallback,
  NonFiniteLossGuard,
  type RunIO,
  runCallbacks,
  SafetensorsCheckpointStore,
  TensorBoardCallback,
  writeResultsJson,
} from '@badam/callbacks';
import {
  baseParametersOf,
  createLrSchedule,
  type DataSource,
  estimatePlanMemory,
  FINE_TUNING_METHOD_SPECS,
  type MemoryEstimate,
  type PlannedTrainerBackend,
  type RunWatcher,
  Trainer,
  type TrainerBackend,
  type TrainerCallback,
  type TrainingPlan,
  type TrainResult,
  totalElements,
  trainedElements,
  UsageError,
} from '@badam/core';
import { writeFileAtomic } from '@badam/safetensors';
import { planRun } from './plan-run.js';
import { FollowerCheckpointStore, type RankGroup, RankInterruptCallback } from './rank-group.js';
import { flagName, type RunnerDialect, type RunOptions } from './run-options.js';
import { checkResume, type RunSettings, runSettingsOf } from './run-settings.js';
import type { RunnerModel } from './runner-model.js';
import { saveTrainedModel } from './trained-model-save.js';
import { TrainingDivergedError } from './training-diverged-error.js';

/** One fine-tuning run, as a runner describes it to {@link fineTune}. */
export interface FineTuneSpec<TBatch> {
  readonly dialect: RunnerDialect;
  readonly options: RunOptions;
  readonly model: RunnerModel<TBatch>;
  readonly trainData: DataSource<TBatch>;
  readonly evalData?: DataSource<TBatch> | undefined;
  /** Training examples (for BAdam's suggested K). */
  readonly trainExamples: number;
  /** K when the command line gives none: a number, or `'suggest'` for `min(max(round(n / (B * D)), 50), 100)`. */
  readonly defaultSwitchBlockEvery: number | 'suggest';
  /** Bytes of activations for the memory estimate (the runner knows its batch shapes). */
  activationBytes(): number;
  /** From `prepareRunBackend`, e.g. `tfjs wasm + native avx512 x2`. */
  readonly backendLabel: string;
  /** Callbacks besides the standard set (progress, log, plot, NaN guard, Ctrl-C, block switches). */
  readonly callbacks?: readonly TrainerCallback[];
  /**
   * The runner's own settings that give a run its meaning (model, data, sequence length...), by the runner's
   * flag names: saved in checkpoints beside the shared ones, and compared on resume.
   */
  readonly runSettings?: RunSettings;
  /**
   * Writes the model's own files (config.json, generation_config.json, tokenizer files) into a checkpoint
   * being saved, so that `checkpoint-N/` loads as a model folder; the weights are the store's.
   */
  readonly checkpointModelFiles?: (directory: string) => Promise<void>;
  /**
   * The dtype the model's weights are stored in on the backend (bf16 or fp16 on cuda with `--bf16` /
   * `--fp16`): checkpoints keep them so, exactly. Default fp32.
   */
  readonly checkpointWeightsDtype?: 'float32' | 'bfloat16' | 'float16';
  /**
   * The live view `--board` shows the run on (badam-board's `boardRunWatcher`, which the runner apps
   * provide). Without one, `--board` says so and the run goes on.
   */
  readonly runWatcher?: RunWatcher;
  readonly io: RunIO;
  /**
   * The ranks of a multi-process run (`--nproc_per_node`), whose model's backend is sharded over them: every
   * rank calls fineTune with the same flags; rank 0 alone writes logs, plots, checkpoints and
   * trainer_state.json, and Ctrl-C stops every rank after the same step.
   */
  readonly distributed?: RankGroup;
}

/** What {@link fineTune} produced. */
export interface FineTuneResult {
  readonly train: TrainResult;
  /** Hugging Face's results (train_*, eval_*) and the run's memory: measured peak and core's estimate. */
  readonly metrics: Record<string, number | string>;
  readonly estimate: MemoryEstimate;
  /** Core's plan of the run: the method's optimizer and the partition it trained. */
  readonly plan: TrainingPlan;
  /**
   * Writes the trained model into the output directory with `write` (the runner's files: weights, config,
   * tokenizer), through {@link saveTrainedModel}: a full disk does not lose it (a rescue directory,
   * retries), and the message names the run's last checkpoint when all fails.
   */
  saveModel(write: (directory: string) => Promise<void>): Promise<void>;
}

/**
 * Trains a runner's model with the run's method, the same for every backend: LoRA adapters when the method
 * needs them, core's plan of the run (flags -> plan), the trainer backend the model's backend makes of it
 * (plan -> factory), the Trainer with the standard callbacks, a checkpoint store (with `--save_steps` or
 * `--resume_from_checkpoint`) and resume; then the metrics both runners report, counted on the plan's
 * partition. The model stays trained in place; its files are the runner's to write.
 */
export async function fineTune<TBatch>(spec: FineTuneSpec<TBatch>): Promise<FineTuneResult> {
  const { options, model, io, dialect } = spec;
  if (FINE_TUNING_METHOD_SPECS[options.method].needsLora) model.addLora();
  const plan = planRun({
    options,
    dialect,
    parameters: model.parameters(),
    partition: model.partition,
    trainExamples: spec.trainExamples,
    defaultSwitchBlockEvery: spec.defaultSwitchBlockEvery,
    logFn: (message, level) => (level === 'warn' ? io.warn(message) : io.log(message)),
  });
  const parameters = totalElements(baseParametersOf(plan));
  const { maxSteps, loggingSteps } = runLength(spec);
  const saveSteps = checkpointInterval(options, spec.trainData.length, dialect);
  const trainingArguments: HfTrainingArguments = {
    loggingSteps,
    evalSteps: options.evalSteps,
    saveSteps,
    trainBatchSize: options.batchSize,
    numTrainEpochs: options.numTrainEpochs,
    parameters,
  };
  const group = spec.distributed;
  const leader = group === undefined || group.rank === 0;
  const backend = await model.createTrainerBackend(plan);
  if (options.board && leader) {
    if (spec.runWatcher !== undefined) await spec.runWatcher.watch(options.outputDir, io);
    else
      io.warn(
        `${dialect.name}: --board: this runner has no live view to show the run on; it goes on without one`,
      );
  }
  let run: { train: TrainResult; lastGood: string | undefined };
  try {
    run = await trainAndCheckpoint(spec, backend, { maxSteps, loggingSteps, saveSteps, trainingArguments });
  } finally {
    backend.dispose(); // frees the optimizer's state and fixes the measured peak
  }
  const { train } = run;
  // Never hand diverged weights to the runner to save: it would replace a good model with them.
  const broken = train.diverged ? [] : backend.nonFiniteWeights();
  if (train.diverged || broken.length > 0) {
    throw new TrainingDivergedError({
      step: train.state.globalStep,
      reason:
        train.stopReason ??
        `${broken.length} weight tensor(s) hold NaN or infinity (${broken.slice(0, 3).join(', ')})`,
      lastGoodCheckpoint: run.lastGood,
      dialect,
    });
  }

  // Hugging Face's trainer_state.json at the root, as the Trainer leaves it after train().
  if (leader)
    await writeFileAtomic(join(options.outputDir, HF_TRAINER_STATE), [
      `${JSON.stringify(huggingFaceTrainerState(train.state, trainingArguments, train.metrics), null, 2)}\n`,
    ]);
  const estimate = estimatePlanMemory(plan, {
    activationBytes: spec.activationBytes(),
    loraRank: options.loraRank,
    ...(group !== undefined ? { worldSize: group.worldSize } : {}),
  });
  const metrics = runMetrics(spec, plan, backend, train, estimate);
  io.log(memorySummary(backend.peakMemoryBytes(), estimate));
  const saveModel = (write: (directory: string) => Promise<void>) =>
    saveTrainedModel({
      outputDir: options.outputDir,
      dialect,
      io,
      lastCheckpoint: train.lastCheckpoint,
      write,
    });
  return { train, metrics, estimate, plan, saveModel };
}

/**
 * The run's optimizer steps (`--max_steps`, else the epochs' worth) and logging interval (unset, it shrinks
 * on a short run so that the loss curve has about 50 points, 10 at most); says when accumulation reads an
 * epoch more than once per step.
 */
function runLength<TBatch>(spec: FineTuneSpec<TBatch>): { maxSteps: number; loggingSteps: number } {
  const { options, dialect, io } = spec;
  const g = options.gradientAccumulationSteps;
  const maxSteps =
    options.maxSteps ?? Math.max(1, Math.ceil((options.numTrainEpochs * (spec.trainData.length ?? 1)) / g));
  const batches = spec.trainData.length;
  if (batches !== undefined && g > batches) {
    const flag = flagName(dialect, 'gradient_accumulation_steps');
    io.warn(
      `${dialect.name}: --${flag} ${g} is more than the ${batches} batch(es) of an epoch: each optimizer step reads the data ${(g / batches).toFixed(1)} times over, so ${maxSteps} step(s) take ${Math.ceil((maxSteps * g) / batches)} epochs; lower --${flag} to at most ${batches} (or the batch size) for at least one step per epoch`,
    );
  }
  const loggingSteps = options.loggingStepsIsDefault
    ? Math.min(options.loggingSteps, Math.max(1, Math.ceil(maxSteps / 50)))
    : options.loggingSteps;
  return { maxSteps, loggingSteps };
}

/**
 * The Trainer over the run's backend with the standard callbacks, `--report_to`'s, a checkpoint store (with
 * `--save_steps`, `--save_strategy epoch` or `--resume_from_checkpoint`) and the resume, checked against the
 * checkpoint's settings; with `--load_best_model_at_end`, the best checkpoint's weights loaded at the end.
 * Returns the Trainer's result and the last checkpoint that holds good weights.
 */
async function trainAndCheckpoint<TBatch>(
  spec: FineTuneSpec<TBatch>,
  backend: PlannedTrainerBackend<TBatch>,
  run: {
    maxSteps: number;
    loggingSteps: number;
    saveSteps: number | undefined;
    trainingArguments: HfTrainingArguments;
  },
): Promise<{ train: TrainResult; lastGood: string | undefined }> {
  const { options, io, dialect } = spec;
  const { maxSteps, loggingSteps, saveSteps } = run;
  const group = spec.distributed;
  const leader = group === undefined || group.rank === 0;
  const { store: files, best } = checkpointing(spec, saveSteps, run.trainingArguments);
  // Rank 0 writes every checkpoint; the other ranks read them and only say where rank 0 wrote.
  const store = files && !leader ? new FollowerCheckpointStore(options.outputDir, files) : files;
  const settings = runSettingsOf(options, dialect, maxSteps, spec.runSettings, group?.worldSize);
  if (group !== undefined) checkSameSettings(group, settings, dialect.name);
  const trainer = new Trainer<TBatch>({
    backend: backend.trainer,
    trainData: spec.trainData,
    ...(spec.evalData ? { evalData: spec.evalData } : {}),
    maxSteps,
    lrSchedule: createLrSchedule({
      type: options.lrSchedulerType,
      learningRate: options.learningRate,
      totalSteps: maxSteps,
      ...(options.warmupSteps !== undefined
        ? { warmupSteps: options.warmupSteps }
        : { warmupRatio: options.warmupRatio }),
    }),
    loggingSteps,
    ...(options.evalSteps !== undefined ? { evalSteps: options.evalSteps } : {}),
    ...(saveSteps !== undefined ? { saveSteps } : {}),
    ...(store ? { checkpoints: store } : {}),
    // Hugging Face saves at the last step too, unless --save_strategy no.
    saveAtEnd: options.saveStrategy !== 'no',
    callbacks: [
      ...rankCallbacks(
        runCallbacks({
          outputDir: options.outputDir,
          loggingSteps,
          plotLoss: options.plotLoss,
          blockSwitchVerbose: options.method === 'block' ? options.badamVerbose : 0,
          log: io.log,
          warn: io.warn,
          ...(io.stream ? { stream: io.stream } : {}),
        }),
        group,
        io,
      ),
      ...(spec.callbacks ?? []),
      ...(best ? [best] : []),
      // TensorBoard's event files are rank 0's to write, as every other file of the run.
      ...(leader ? reportCallbacks(options, io, dialect) : []),
      { stateKey: 'run_settings', saveState: () => settings },
    ],
  });
  const resumeFrom =
    options.resumeFromCheckpoint === undefined
      ? undefined
      : await store!.load(options.resumeFromCheckpoint === 'true' ? undefined : options.resumeFromCheckpoint);
  if (resumeFrom) {
    checkResume(resumeFrom, settings, maxSteps, options, dialect, io);
    io.log(`${dialect.name}: resuming from ${resumeFrom.path} (step ${resumeFrom.trainerState.globalStep})`);
  }
  const train = await trainer.train(resumeFrom ? { resumeFrom } : {});
  if (best !== undefined && !train.diverged) await loadBestModel(best, files!, backend.trainer, io, dialect);
  return { train, lastGood: train.lastCheckpoint ?? resumeFrom?.path };
}

/** The metrics both runners report: the Trainer's, the backend, parameters, measured peaks and core's estimate. */
function runMetrics<TBatch>(
  spec: FineTuneSpec<TBatch>,
  plan: TrainingPlan,
  backend: PlannedTrainerBackend<TBatch>,
  train: TrainResult,
  estimate: MemoryEstimate,
): Record<string, number | string> {
  const metrics: Record<string, number | string> = {
    ...train.metrics,
    backend: spec.backendLabel,
    parameters: totalElements(baseParametersOf(plan)),
    trainable_parameters: trainedElements(plan),
    peak_memory_bytes: backend.peakMemoryBytes(),
    // The allocator's peak of each kind (cuda): what BAdam's memory claim is checked against.
    ...Object.fromEntries(
      Object.entries(backend.peakMemoryByKind?.() ?? {}).map(([kind, bytes]) => [
        `peak_memory_${snakeCase(kind)}_bytes`,
        bytes,
      ]),
    ),
    estimated_memory_bytes: estimate.total,
    estimated_weights_bytes: estimate.weights,
    estimated_masters_bytes: estimate.masters,
    estimated_gradients_bytes: estimate.gradients,
    estimated_optimizer_bytes: estimate.optimizerState,
    estimated_activations_bytes: estimate.activations,
  };
  if (spec.options.method === 'block') {
    metrics.trained_parameters_per_block = Math.max(...plan.partition.groups.map((group) => group.length));
  }
  const group = spec.distributed;
  if (group !== undefined) {
    // Every rank's peak, for rank 0's results (the one-hot sum is every rank's own number).
    const mine = new Float64Array(group.worldSize);
    mine[group.rank] = backend.peakMemoryBytes();
    const peaks = group.allReduceSum(mine);
    metrics.world_size = group.worldSize;
    peaks.forEach((bytes, rank) => {
      metrics[`peak_memory_bytes_rank_${rank}`] = bytes;
    });
  }
  return metrics;
}

/**
 * The standard callbacks as each rank of a multi-process run keeps them: rank 0 all of them (progress, logs,
 * plots), the others only the NaN guard, whose decisions must be every rank's; Ctrl-C is decided together.
 */
function rankCallbacks(
  standard: TrainerCallback[],
  group: RankGroup | undefined,
  io: RunIO,
): TrainerCallback[] {
  if (group === undefined) return standard;
  const together = new RankInterruptCallback(group, io.warn);
  if (group.rank === 0) return [...standard.filter((c) => !(c instanceof InterruptCallback)), together];
  return [new NonFiniteLossGuard({ warn: () => {} }), together];
}

/** Refuses ranks started with other settings than rank 0's: they would not train the same run. */
function checkSameSettings(group: RankGroup, settings: Record<string, unknown>, name: string): void {
  const leaders = group.broadcastJson(settings);
  const differences = [...new Set([...Object.keys(leaders), ...Object.keys(settings)])].filter(
    (key) => JSON.stringify(leaders[key]) !== JSON.stringify(settings[key]),
  );
  if (differences.length > 0)
    throw new UsageError(
      `${name}: rank ${group.rank} was started with other settings than rank 0 (${differences
        .map(
          (key) => `${key}: ${JSON.stringify(settings[key])} here, ${JSON.stringify(leaders[key])} on rank 0`,
        )
        .join('; ')}): start every rank with the same flags`,
    );
}

/**
 * The run's checkpoint store (with `--save_steps` / `--save_strategy epoch`, or to resume from) as the
 * Trainer arguments configure it, and `--load_best_model_at_end`'s tracker of the best one.
 */
function checkpointing<TBatch>(
  spec: FineTuneSpec<TBatch>,
  saveSteps: number | undefined,
  trainingArguments: HfTrainingArguments,
): { store: SafetensorsCheckpointStore | undefined; best: BestModelCallback | undefined } {
  const { options, io, dialect } = spec;
  const store =
    saveSteps !== undefined || options.resumeFromCheckpoint !== undefined
      ? new SafetensorsCheckpointStore({
          outputDir: options.outputDir,
          keepLast: options.saveTotalLimit ?? Number.POSITIVE_INFINITY,
          log: (message) => io.warn(`${dialect.name}: ${message}`),
          trainingArguments,
          modelOnly: options.saveOnlyModel,
          ...(spec.checkpointWeightsDtype ? { weightsDtype: spec.checkpointWeightsDtype } : {}),
          ...(spec.checkpointModelFiles ? { writeModelFiles: spec.checkpointModelFiles } : {}),
        })
      : undefined;
  if (options.bestModel === undefined) return { store, best: undefined };
  // Each rank would restore the best weights from rank 0's files with an optimizer state it does not hold.
  if (spec.distributed !== undefined)
    throw new UsageError(
      `--${flagName(dialect, 'load_best_model_at_end')} does not run over several processes yet: drop it (every checkpoint's eval metrics are in trainer_state.json), or train in one process`,
    );
  checkBestModelCadence(options, saveSteps, dialect, spec.evalData !== undefined);
  const best = new BestModelCallback({
    outputDir: options.outputDir,
    ...options.bestModel,
    onBest: (dir) => store?.protect(dir),
  });
  return { store, best };
}

/**
 * Optimizer steps between checkpoints: `--save_steps` (`--save_strategy steps`), one epoch's steps
 * (`epoch`), or none (`no`, or steps without `--save_steps`).
 */
function checkpointInterval(
  options: RunOptions,
  epochLength: number | undefined,
  dialect: RunnerDialect,
): number | undefined {
  if (options.saveStrategy === 'no') return undefined;
  if (options.saveStrategy === 'epoch') {
    if (epochLength === undefined)
      throw new UsageError(
        `--${flagName(dialect, 'save_strategy')} epoch needs training data of known length: use --${flagName(dialect, 'save_steps')}`,
      );
    return Math.max(1, Math.ceil(epochLength / options.gradientAccumulationSteps));
  }
  return options.saveSteps;
}

/**
 * Refuses `--load_best_model_at_end` where checkpoints do not fall on evaluations (Hugging Face refuses the
 * same): each checkpoint's step must have an evaluation to compare.
 */
function checkBestModelCadence(
  options: RunOptions,
  saveSteps: number | undefined,
  dialect: RunnerDialect,
  evaluates: boolean,
): void {
  const flag = `--${flagName(dialect, 'load_best_model_at_end')}`;
  if (!evaluates || options.evalSteps === undefined)
    throw new UsageError(
      `${flag} compares evaluations, but this run evaluates ${evaluates ? 'only at the end' : 'never'}: give it a validation set and an evaluation interval (--${flagName(dialect, 'eval_steps')})`,
    );
  if (saveSteps === undefined || saveSteps % options.evalSteps !== 0)
    throw new UsageError(
      `${flag} needs each checkpoint on an evaluation step: checkpoints every ${saveSteps} steps, evaluations every ${options.evalSteps}; make --${flagName(dialect, 'save_steps')} a multiple of --${flagName(dialect, 'eval_steps')}`,
    );
}

/** Loads the best checkpoint's weights into the model (its optimizer state is not needed any more). */
async function loadBestModel<TBatch>(
  best: BestModelCallback,
  store: SafetensorsCheckpointStore,
  trainer: TrainerBackend<TBatch>,
  io: RunIO,
  dialect: RunnerDialect,
): Promise<void> {
  const found = best.best;
  if (found?.best_model_checkpoint == null) {
    io.warn(
      `${dialect.name}: --load_best_model_at_end: ${best.metricMissing ? 'the evaluation has no such metric' : 'no checkpoint was saved at an evaluation'}; keeping the last model`,
    );
    return;
  }
  const weights = await store.loadWeights(found.best_model_checkpoint);
  const now = await trainer.snapshot();
  await trainer.restore({ weights, optimizer: now.optimizer });
  io.log(
    `${dialect.name}: loaded the best model, ${found.best_model_checkpoint} (step ${found.best_global_step}, ${Number(found.best_metric.toPrecision(6))})`,
  );
}

/**
 * The callbacks of `--report_to`: TensorBoard's event files (in `--logging_dir`); an integration that is
 * not here is named once, with where its numbers are instead.
 */
function reportCallbacks(options: RunOptions, io: RunIO, dialect: RunnerDialect): TrainerCallback[] {
  const out: TrainerCallback[] = [];
  for (const name of options.reportTo) {
    if (name === 'tensorboard') {
      const logDir = options.loggingDir ?? defaultLoggingDir(options.outputDir);
      io.log(`${dialect.name}: TensorBoard event files in ${logDir} (tensorboard --logdir ${logDir})`);
      out.push(new TensorBoardCallback({ logDir }));
    } else {
      io.warn(
        `${dialect.name}: --report_to ${name} is ignored: only tensorboard is an integration here; every number is in trainer_log.jsonl (and badam-board shows it live)`,
      );
    }
  }
  return out;
}

/**
 * What the run's three memory numbers count, said once at the end: the progress line's `mem` (held between
 * steps), its `peak` (the most held during a pass: all_results.json's `peak_memory_bytes`) and core's
 * estimate (`estimated_*`: a closed form of the weights, the trained block's state and one batch's
 * activations, which a backend's own workspace and tape do not follow).
 */
export function memorySummary(peakBytes: number, estimate: MemoryEstimate): string {
  const state = estimate.masters + estimate.gradients + estimate.optimizerState;
  return (
    `memory: peak ${formatMemory(peakBytes)} measured during a pass (the progress line's peak, all_results.json's peak_memory_bytes); ` +
    `core's estimate ${formatMemory(estimate.total)} = weights ${formatMemory(estimate.weights)} + trained state ${formatMemory(state)} + activations ${formatMemory(estimate.activations)} (estimated_*); ` +
    "the progress line's mem is what is held between steps"
  );
}

/** `optimizerState` -> `optimizer_state`, for Hugging Face-style metric names. */
function snakeCase(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/**
 * Writes a run's results as Hugging Face's Trainer does: `all_results.json`, `train_results.json` (train_*
 * and epoch) and, after an evaluation, `eval_results.json` (eval_* and epoch).
 */
export async function writeRunResults(
  outputDir: string,
  metrics: Readonly<Record<string, number | string>>,
): Promise<void> {
  const pick = (prefix: string) =>
    Object.fromEntries(Object.entries(metrics).filter(([k]) => k.startsWith(prefix) || k === 'epoch'));
  await writeResultsJson(join(outputDir, 'all_results.json'), metrics);
  await writeResultsJson(join(outputDir, 'train_results.json'), pick('train_'));
  if (metrics.eval_loss !== undefined)
    await writeResultsJson(join(outputDir, 'eval_results.json'), pick('eval_'));
}
