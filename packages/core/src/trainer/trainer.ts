import type { Checkpoint, CheckpointStore } from '../checkpoint/checkpoint-store.js';
import { TRAINING_DEFAULTS } from '../defaults.js';
import { BadamOptionError, BadamStateError } from '../errors.js';
import { nonFiniteArrays } from '../named-array.js';
import { requireInteger, requireNumber } from '../validation.js';
import type { DataSource } from './data-source.js';
import type { TrainerBackend } from './trainer-backend.js';
import type {
  LogEntry,
  LossVerdict,
  TrainerCallback,
  TrainerContext,
  TrainerControl,
  TrainerProgress,
} from './trainer-callback.js';
import type { TrainerState } from './trainer-state.js';

/** Options of a {@link Trainer}. */
export interface TrainerOptions<TBatch> {
  /** The model and optimizer on some tensor library. */
  backend: TrainerBackend<TBatch>;
  /** Training micro-batches, per epoch. */
  trainData: DataSource<TBatch>;
  /** Evaluation batches (read as epoch 0). */
  evalData?: DataSource<TBatch>;
  /** Passes over the training data. Default 1. Ignored when `maxSteps` is set. */
  numEpochs?: number;
  /** Optimizer steps of the run; overrides `numEpochs`. */
  maxSteps?: number;
  /** Learning rate of each optimizer step (0-based), e.g. core's `createLrSchedule`. Default: the backend's, constant. */
  lrSchedule?: (step: number) => number;
  /** Log every this many optimizer steps. Default 10. */
  loggingSteps?: number;
  /** Evaluate every this many optimizer steps (and at the end). Default: only at the end. */
  evalSteps?: number;
  /** Save a checkpoint every this many optimizer steps (and at the end). Needs `checkpoints`. */
  saveSteps?: number;
  /** Where checkpoints go. Without it nothing is saved. */
  checkpoints?: CheckpointStore;
  /** Hooks: progress, logs, plots, early stopping, the NaN guard, Ctrl-C... */
  callbacks?: readonly TrainerCallback[];
  /** Evaluate after the last step when `evalData` is given. Default true. */
  evalAtEnd?: boolean;
  /** Save after the last step when `checkpoints` is given. Default true. */
  saveAtEnd?: boolean;
}

/** What {@link Trainer.train} returns. */
export interface TrainResult {
  readonly state: TrainerState;
  /** Why training ended early, if it did (early stopping, interrupted, non-finite loss...). */
  readonly stopReason: string | undefined;
  /** Summary in Hugging Face's naming: train_loss, train_runtime, train_tokens_per_second, eval_* ... */
  readonly metrics: Readonly<Record<string, number>>;
  /** Path of the last checkpoint saved in this session, if any. */
  readonly lastCheckpoint: string | undefined;
  /**
   * True when training stopped because it diverged: the loss guard stopped it, or the weights or optimizer
   * state held a NaN or an infinity when a checkpoint was due. Nothing was saved from that point on.
   */
  readonly diverged: boolean;
}

class Control implements TrainerControl {
  stopReason: string | undefined;
  diverged = false;
  saveRequested = false;
  evaluateRequested = false;
  stop(reason: string): void {
    this.stopReason ??= reason;
  }
  requestSave(): void {
    this.saveRequested = true;
  }
  requestEvaluate(): void {
    this.evaluateRequested = true;
  }
}

/**
 * The training loop, independent of the tensor library: epochs or max steps over a data source,
 * micro-batches with gradient accumulation, the learning-rate schedule, periodic logging, evaluation and
 * checkpoints, exact resume, and events to callbacks.
 *
 * @example
 * ```ts
 * const trainer = new Trainer({
 *   backend,                                   // e.g. @badam/tfjs's TfjsTrainerBackend
 *   trainData: arrayDataSource(examples, { batchSize: 4, collate, shuffleSeed: 42 }),
 *   numEpochs: 3,
 *   lrSchedule: createLrSchedule({ type: 'cosine', learningRate: 1e-5, totalSteps: 300, warmupRatio: 0.1 }),
 *   checkpoints: new SafetensorsCheckpointStore({ outputDir: 'out', keepLast: 2 }),
 *   saveSteps: 100,
 *   callbacks: [new ProgressCallback(), new MetricsLogCallback({ outputDir: 'out' })],
 * });
 * const { metrics } = await trainer.train();
 * ```
 */
export class Trainer<TBatch> {
  private readonly backend: TrainerBackend<TBatch>;
  private readonly options: TrainerOptions<TBatch>;
  private readonly callbacks: readonly TrainerCallback[];
  private readonly loggingSteps: number;
  private readonly evalSteps: number | undefined;
  private readonly saveSteps: number | undefined;
  private trainerState: TrainerState;
  private control = new Control();
  private lastLoss = Number.NaN;
  private lastLr: number;
  private activeBlock: number | undefined;
  private gradNorm: number | undefined;
  private sessionStart = 0;
  private sessionTokens = 0;
  private elapsedBefore = 0;

  constructor(options: TrainerOptions<TBatch>) {
    if (typeof options !== 'object' || options === null) {
      throw new BadamOptionError('options', options, 'an object of Trainer options');
    }
    const { backend, trainData } = options;
    if (backend === undefined || typeof backend.forwardBackward !== 'function') {
      throw new BadamOptionError(
        'backend',
        backend,
        'a TrainerBackend (e.g. @badam/tfjs TfjsTrainerBackend)',
      );
    }
    if (trainData === undefined || typeof trainData.batches !== 'function') {
      throw new BadamOptionError('trainData', trainData, 'a DataSource with batches(epoch)');
    }
    this.backend = backend;
    this.options = options;
    this.callbacks = options.callbacks ?? [];
    this.loggingSteps = requireInteger(
      'loggingSteps',
      options.loggingSteps ?? TRAINING_DEFAULTS.trainer.loggingSteps,
      { min: 1 },
    );
    this.evalSteps =
      options.evalSteps === undefined
        ? undefined
        : requireInteger('evalSteps', options.evalSteps, { min: 1 });
    this.saveSteps =
      options.saveSteps === undefined
        ? undefined
        : requireInteger('saveSteps', options.saveSteps, { min: 1 });
    if (this.saveSteps !== undefined && options.checkpoints === undefined) {
      throw new BadamOptionError('checkpoints', undefined, 'a CheckpointStore when saveSteps is set');
    }
    if (this.evalSteps !== undefined && options.evalData === undefined) {
      throw new BadamOptionError('evalData', undefined, 'a DataSource when evalSteps is set');
    }
    const epochLength = trainData.length;
    const g = requireInteger('backend.gradientAccumulationSteps', backend.gradientAccumulationSteps, {
      min: 1,
    });
    let maxSteps: number;
    if (options.maxSteps !== undefined) {
      maxSteps = requireInteger('maxSteps', options.maxSteps, { min: 1 });
    } else {
      const epochs = requireNumber('numEpochs', options.numEpochs ?? TRAINING_DEFAULTS.trainer.numEpochs, {
        min: 0,
        exclusiveMin: true,
      });
      if (epochLength === undefined) {
        throw new BadamOptionError('maxSteps', undefined, 'set when the training data has no known length');
      }
      maxSteps = Math.ceil((epochs * epochLength) / g);
      if (maxSteps < 1) {
        throw new BadamOptionError(
          'trainData',
          `${epochLength} micro-batches`,
          `at least ${g} micro-batch(es) for one optimizer step`,
        );
      }
    }
    this.lastLr = backend.learningRate;
    this.trainerState = {
      version: 1,
      globalStep: 0,
      maxSteps,
      epoch: 0,
      microBatchInEpoch: 0,
      epochLength,
      tokensSeen: 0,
      elapsedMs: 0,
      skippedMicroBatches: 0,
      logHistory: [],
      callbacks: {},
    };
  }

  /** The trainer's resumable state. */
  get state(): Readonly<TrainerState> {
    return this.trainerState;
  }

  /**
   * Runs the loop until `maxSteps`, the end of the epochs, or a stop request. With `resumeFrom` (a
   * checkpoint from the store) the backend's weights and optimizer state and the trainer's position are
   * restored first, and the run continues exactly where that checkpoint was taken.
   */
  async train(options: { resumeFrom?: Checkpoint } = {}): Promise<TrainResult> {
    this.control = new Control();
    if (options.resumeFrom !== undefined) await this.resume(options.resumeFrom);
    this.sessionStart = Date.now();
    this.sessionTokens = 0;
    this.elapsedBefore = this.trainerState.elapsedMs;
    const session: TrainSession = {
      accumulationSteps: this.backend.gradientAccumulationSteps,
      lastCheckpoint: undefined,
      lastEvalStep: -1,
      // The checkpoint resumed from is this step's save: a run resumed at its last step (killed before its
      // final save) saves nothing again, which would replace that checkpoint and cut its timeline.
      lastSaveStep: options.resumeFrom !== undefined ? this.trainerState.globalStep : -1,
      logLossSum: 0,
      logSteps: 0,
      trainLossSum: 0,
      trainSteps: 0,
      stepLossSum: 0,
      stepMicro: 0,
    };
    await this.emit('onTrainBegin');
    await this.runEpochs(session);
    if (session.stepMicro > 0) await this.backend.discardGradients(); // a partial step left at the very end
    await this.finish(session);
    return this.result(session);
  }

  /** The epochs: every micro-batch not consumed before a checkpoint, until training ends. */
  private async runEpochs(session: TrainSession): Promise<void> {
    const state = this.trainerState;
    while (state.globalStep < state.maxSteps && this.control.stopReason === undefined) {
      let index = 0;
      let yielded = false;
      for await (const batch of this.options.trainData.batches(state.epoch)) {
        yielded = true;
        if (index++ < state.microBatchInEpoch) continue; // consumed before the checkpoint
        if ((await this.microBatch(batch, session)) === 'end') return;
      }
      if (!yielded) {
        throw new BadamOptionError(
          'trainData',
          `epoch ${state.epoch}`,
          'a data source that yields micro-batches every epoch',
        );
      }
      state.epoch += 1;
      state.microBatchInEpoch = 0;
    }
  }

  /**
   * One micro-batch: the step's learning rate when it starts one, forward and backward, the callbacks'
   * verdict on its loss (a skipped one drops the step's gradients), and the optimizer step once the
   * accumulation is complete. `'end'` when training ends here.
   */
  private async microBatch(batch: TBatch, session: TrainSession): Promise<'next' | 'end'> {
    const state = this.trainerState;
    if (session.stepMicro === 0) {
      this.lastLr = this.options.lrSchedule
        ? this.options.lrSchedule(state.globalStep)
        : this.backend.learningRate;
      this.backend.learningRate = this.lastLr;
      await this.emit('onStepBegin');
    }
    const { loss, tokens } = await this.backend.forwardBackward(batch);
    state.microBatchInEpoch += 1;
    const verdict = await this.lossVerdict(loss);
    if (verdict !== 'keep') {
      await this.backend.discardGradients();
      state.skippedMicroBatches += 1;
      session.stepLossSum = 0;
      session.stepMicro = 0;
      if (verdict === 'skip') return 'next';
      this.control.stop(`training stopped on a loss of ${loss}`);
      this.control.diverged = true;
      return 'end';
    }
    session.stepLossSum += loss;
    session.stepMicro += 1;
    state.tokensSeen += tokens;
    this.sessionTokens += tokens;
    const result = await this.backend.step();
    if (!result.applied) return 'next';
    if (session.stepMicro !== session.accumulationSteps) {
      throw new BadamStateError(
        `the backend applied an update after ${session.stepMicro} micro-batches, but gradientAccumulationSteps is ${session.accumulationSteps}`,
      );
    }
    state.globalStep += 1;
    this.lastLoss = session.stepLossSum / session.stepMicro;
    session.stepLossSum = 0;
    session.stepMicro = 0;
    this.gradNorm = result.gradNorm;
    this.activeBlock = result.activeBlock;
    session.logLossSum += this.lastLoss;
    session.logSteps += 1;
    session.trainLossSum += this.lastLoss;
    session.trainSteps += 1;
    state.elapsedMs = this.elapsedBefore + (Date.now() - this.sessionStart);
    // Let timers, I/O and signal handlers (Ctrl-C) run between steps: every await above may resolve
    // synchronously, which would starve them for the whole run.
    await yieldToEventLoop();
    await this.emit('onStepEnd');
    if (result.switched && result.updatedBlock !== undefined && result.activeBlock !== undefined) {
      await this.emit('onBlockSwitch', { from: result.updatedBlock, to: result.activeBlock });
    }
    return this.afterStep(session);
  }

  /** What follows an optimizer step when due: its log line, an evaluation, a checkpoint. */
  private async afterStep(session: TrainSession): Promise<'next' | 'end'> {
    const state = this.trainerState;
    const last = state.globalStep >= state.maxSteps;
    if (state.globalStep % this.loggingSteps === 0 || last) {
      await this.log({ loss: session.logLossSum / session.logSteps });
      session.logLossSum = 0;
      session.logSteps = 0;
    }
    const evalDue = this.evalSteps !== undefined && state.globalStep % this.evalSteps === 0;
    if (this.options.evalData !== undefined && (evalDue || this.control.evaluateRequested)) {
      this.control.evaluateRequested = false;
      await this.evaluate();
      session.lastEvalStep = state.globalStep;
    }
    const saveDue = this.saveSteps !== undefined && state.globalStep % this.saveSteps === 0;
    if (this.options.checkpoints !== undefined && (saveDue || this.control.saveRequested)) {
      this.control.saveRequested = false;
      session.lastCheckpoint = (await this.save()) ?? session.lastCheckpoint;
      session.lastSaveStep = state.globalStep;
    }
    return last || this.control.stopReason !== undefined ? 'end' : 'next';
  }

  /** The end of a run that did not diverge: a last evaluation and checkpoint unless its last step had them. */
  private async finish(session: TrainSession): Promise<void> {
    const state = this.trainerState;
    if (
      this.options.evalData !== undefined &&
      (this.options.evalAtEnd ?? true) &&
      session.lastEvalStep !== state.globalStep &&
      !this.control.diverged
    ) {
      await this.evaluate();
    }
    if (
      this.options.checkpoints !== undefined &&
      (this.options.saveAtEnd ?? true) &&
      session.lastSaveStep !== state.globalStep &&
      !this.control.diverged
    ) {
      session.lastCheckpoint = (await this.save()) ?? session.lastCheckpoint;
    }
    state.elapsedMs = this.elapsedBefore + (Date.now() - this.sessionStart);
    await this.emit('onTrainEnd');
  }

  /** What {@link train} returns: Hugging Face's train_* metrics and the last evaluation's eval_* ones. */
  private result(session: TrainSession): TrainResult {
    const state = this.trainerState;
    const seconds = (Date.now() - this.sessionStart) / 1000;
    const evalMetrics = [...state.logHistory].reverse().find((e) => e.eval_loss !== undefined);
    const metrics: Record<string, number> = {
      train_loss: session.trainSteps > 0 ? session.trainLossSum / session.trainSteps : Number.NaN,
      train_runtime: seconds,
      train_tokens_per_second: seconds > 0 ? this.sessionTokens / seconds : 0,
      train_steps: state.globalStep,
      epoch: this.epochFraction(),
    };
    if (evalMetrics !== undefined) {
      for (const [key, value] of Object.entries(evalMetrics)) {
        if (key.startsWith('eval_') && typeof value === 'number') metrics[key] = value;
      }
    }
    return {
      state,
      stopReason: this.control.stopReason,
      metrics,
      lastCheckpoint: session.lastCheckpoint,
      diverged: this.control.diverged,
    };
  }

  /** Loss and metrics over the evaluation data (weighted by each batch's weight); logged and sent to callbacks. */
  async evaluate(): Promise<Record<string, number>> {
    const data = this.options.evalData;
    if (data === undefined) throw new BadamOptionError('evalData', undefined, 'a DataSource to evaluate on');
    let weightSum = 0;
    let lossSum = 0;
    const metricSums = new Map<string, number>();
    for await (const batch of data.batches(0)) {
      const { loss, weight, metrics } = await this.backend.evaluate(batch);
      weightSum += weight;
      lossSum += loss * weight;
      for (const [k, v] of Object.entries(metrics ?? {}))
        metricSums.set(k, (metricSums.get(k) ?? 0) + v * weight);
    }
    if (weightSum === 0)
      throw new BadamOptionError('evalData', 'no batches', 'a data source with at least one batch');
    const metrics: Record<string, number> = { eval_loss: lossSum / weightSum };
    for (const [k, v] of metricSums) metrics[`eval_${k}`] = v / weightSum;
    await this.log(metrics);
    await this.emit('onEvaluate', metrics);
    return metrics;
  }

  private async resume(checkpoint: Checkpoint): Promise<void> {
    const saved = checkpoint.trainerState;
    if (
      saved.epochLength !== undefined &&
      this.trainerState.epochLength !== undefined &&
      saved.epochLength !== this.trainerState.epochLength
    ) {
      throw new BadamStateError(
        `checkpoint ${checkpoint.path} was taken with ${saved.epochLength} micro-batches per epoch, this data has ${this.trainerState.epochLength}; resume with the same data and batch size`,
      );
    }
    await this.backend.restore(checkpoint.snapshot);
    this.trainerState = {
      ...structuredClone(saved),
      maxSteps: this.trainerState.maxSteps,
      epochLength: this.trainerState.epochLength,
    };
    this.trainerState.callbacks ??= {};
    for (const callback of this.callbacks) {
      const key = callback.stateKey;
      if (key !== undefined && key in this.trainerState.callbacks)
        callback.loadState?.(this.trainerState.callbacks[key]);
    }
    const lastLog = [...saved.logHistory].reverse().find((e) => e.loss !== undefined);
    this.lastLoss = lastLog?.loss ?? Number.NaN;
  }

  /**
   * Saves a checkpoint, unless the weights or the optimizer's tensors hold a NaN or an infinity: then
   * nothing is written, training stops as diverged, and undefined is returned.
   */
  private async save(): Promise<string | undefined> {
    const store = this.options.checkpoints!;
    for (const callback of this.callbacks) {
      if (callback.stateKey !== undefined && callback.saveState !== undefined) {
        this.trainerState.callbacks[callback.stateKey] = callback.saveState();
      }
    }
    const snapshot = await this.backend.snapshot();
    const broken = nonFiniteArrays([...snapshot.weights, ...snapshot.optimizer.tensors]);
    if (broken.length > 0) {
      this.control.stop(
        `at step ${this.trainerState.globalStep} ${broken.length} tensor(s) hold NaN or infinity (${broken.slice(0, 3).join(', ')}${broken.length > 3 ? ', ...' : ''}): not saved`,
      );
      this.control.diverged = true;
      return undefined;
    }
    const path = await store.save(this.trainerState.globalStep, snapshot, structuredClone(this.trainerState));
    await this.emit('onSave', { path, step: this.trainerState.globalStep });
    return path;
  }

  private async log(values: Record<string, number>): Promise<void> {
    const progress = this.progress();
    const entry: LogEntry = {
      step: progress.step,
      epoch: Number(progress.epoch.toFixed(4)),
      ...(values.loss !== undefined
        ? {
            learning_rate: progress.lr,
            tokens_per_second: progress.tokensPerSecond,
            memory_bytes: progress.memory.bytes,
            ...(progress.gradNorm !== undefined ? { grad_norm: progress.gradNorm } : {}),
            ...(progress.activeBlock !== undefined ? { active_block: progress.activeBlock } : {}),
          }
        : {}),
      ...values,
    };
    this.trainerState.logHistory.push(entry);
    await this.emit('onLog', entry);
  }

  private async lossVerdict(loss: number): Promise<LossVerdict> {
    let verdict: LossVerdict = 'keep';
    for (const callback of this.callbacks) {
      const answer = await callback.onMicroBatchLoss?.(this.context(), loss);
      if (answer === 'stop') return 'stop';
      if (answer === 'skip') verdict = 'skip';
    }
    return verdict;
  }

  private epochFraction(): number {
    const { epoch, microBatchInEpoch, epochLength } = this.trainerState;
    return epochLength ? epoch + microBatchInEpoch / epochLength : epoch;
  }

  private progress(): TrainerProgress {
    const seconds = (Date.now() - this.sessionStart) / 1000;
    return {
      step: this.trainerState.globalStep,
      maxSteps: this.trainerState.maxSteps,
      epoch: this.epochFraction(),
      loss: this.lastLoss,
      lr: this.lastLr,
      activeBlock: this.backend.activeBlock ?? this.activeBlock,
      tokensSeen: this.trainerState.tokensSeen,
      tokensPerSecond: seconds > 0 ? this.sessionTokens / seconds : 0,
      elapsedMs: this.elapsedBefore + (Date.now() - this.sessionStart),
      gradNorm: this.gradNorm,
      memory: this.backend.memory(),
    };
  }

  private context(): TrainerContext {
    return {
      progress: this.progress(),
      state: this.trainerState,
      control: this.control,
      description: this.backend.description,
    };
  }

  private async emit<E extends keyof TrainerCallback>(
    event: E,
    ...args: TrainerCallback[E] extends ((context: TrainerContext, ...rest: infer R) => unknown) | undefined
      ? R
      : never
  ): Promise<void> {
    const context = this.context();
    for (const callback of this.callbacks) {
      const hook = callback[event] as ((context: TrainerContext, ...rest: unknown[]) => unknown) | undefined;
      if (hook !== undefined) await hook.call(callback, context, ...args);
    }
  }
}

/** What one call of {@link Trainer.train} counts as it goes. */
interface TrainSession {
  /** G, micro-batches per optimizer step. */
  readonly accumulationSteps: number;
  /** The last checkpoint saved in this session. */
  lastCheckpoint: string | undefined;
  /** Steps of the last evaluation and the last save (-1: none yet). */
  lastEvalStep: number;
  lastSaveStep: number;
  /** Loss of the steps since the last log line, and of every step of the session. */
  logLossSum: number;
  logSteps: number;
  trainLossSum: number;
  trainSteps: number;
  /** Loss and micro-batches of the optimizer step being accumulated. */
  stepLossSum: number;
  stepMicro: number;
}

/** Resolves on the next turn of the event loop (after pending I/O and timers). */
function yieldToEventLoop(): Promise<void> {
  const immediate = (globalThis as { setImmediate?: (callback: () => void) => unknown }).setImmediate;
  return new Promise((resolve) => (immediate ? immediate(resolve) : setTimeout(resolve, 0)));
}
