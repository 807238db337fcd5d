import type {
  BackendMemoryReport,
  LogEntry,
  TrainerCallback,
  TrainerContext,
  TrainerControl,
  TrainerProgress,
  TrainerState,
} from '@badam/core';

/** The hooks `tf.LayersModel.fit` accepts as `callbacks` (tfjs's CustomCallbackArgs), typed without tfjs. */
export interface FitCallbackHooks {
  onTrainBegin(logs?: Record<string, number>): Promise<void>;
  onBatchEnd(batch: number, logs?: Record<string, number>): Promise<void>;
  onEpochEnd(epoch: number, logs?: Record<string, number>): Promise<void>;
  onTrainEnd(logs?: Record<string, number>): Promise<void>;
}

/** The optimizer facts the adapter reports (a @badam/tfjs BlockOptimizer fits; any tf.Optimizer works without them). */
export interface FitOptimizerView {
  readonly lr?: number;
  readonly activeBlock?: { readonly index: number };
  readonly lastStep?: {
    readonly switched?: boolean;
    readonly updatedBlock?: number;
    readonly activeBlock?: number;
  };
  memory?(): BackendMemoryReport;
}

/** Options of {@link fitCallbacks}. */
export interface FitCallbackOptions {
  /** The trainer callbacks to drive (progress, metrics log, loss plot, block-switch log, early stopping...). */
  callbacks: readonly TrainerCallback[];
  /** Optimizer steps of the whole fit: epochs x batches per epoch. */
  totalSteps: number;
  /** Batches per epoch, for fractional epochs. */
  batchesPerEpoch?: number;
  /** The optimizer passed to `model.compile`. */
  optimizer?: FitOptimizerView;
  /** The model, so that a stop request (early stopping, Ctrl-C) sets `model.stopTraining`. */
  model?: { stopTraining: boolean };
  /** Log every this many batches. Default 10. */
  loggingSteps?: number;
  /** Tokens or examples per batch, for throughput. Default 1 (examples count as batches). */
  tokensPerBatch?: number;
  description?: string;
}

/**
 * Drives trainer callbacks from `tf.LayersModel.fit`: pass the result as fit's `callbacks`. Each batch is an
 * optimizer step (`onStepEnd`, `onBlockSwitch` when BAdam switched, `onLog` every `loggingSteps`), a
 * validation loss at the end of an epoch is an evaluation (`onEvaluate` with `eval_loss`), and a stop
 * request from a callback sets `model.stopTraining`.
 *
 * @example
 * ```ts
 * await model.fit(x, y, { epochs: 3, batchSize: 8, validationSplit: 0.1,
 *   callbacks: fitCallbacks({ callbacks: [new ProgressCallback(), new MetricsLogCallback({ outputDir })],
 *     totalSteps: 3 * Math.ceil(n / 8), optimizer, model }) });
 * ```
 */
export function fitCallbacks(options: FitCallbackOptions): FitCallbackHooks {
  const { callbacks, totalSteps, optimizer, model, loggingSteps = 10, tokensPerBatch = 1 } = options;
  const started = Date.now();
  let step = 0;
  let loss = Number.NaN;
  let logLoss = 0;
  let logCount = 0;
  let stopReason: string | undefined;
  const state: TrainerState = {
    version: 1,
    globalStep: 0,
    maxSteps: totalSteps,
    epoch: 0,
    microBatchInEpoch: 0,
    epochLength: options.batchesPerEpoch,
    tokensSeen: 0,
    elapsedMs: 0,
    skippedMicroBatches: 0,
    logHistory: [],
    callbacks: {},
  };
  const control: TrainerControl = {
    stop(reason: string) {
      stopReason ??= reason;
      if (model !== undefined) model.stopTraining = true;
    },
    requestSave() {},
    requestEvaluate() {},
    get stopReason() {
      return stopReason;
    },
  };
  const progress = (): TrainerProgress => {
    const elapsedMs = Date.now() - started;
    return {
      step,
      maxSteps: totalSteps,
      epoch: options.batchesPerEpoch ? step / options.batchesPerEpoch : state.epoch,
      loss,
      lr: optimizer?.lr ?? Number.NaN,
      activeBlock: optimizer?.activeBlock?.index,
      tokensSeen: state.tokensSeen,
      tokensPerSecond: elapsedMs > 0 ? (1000 * state.tokensSeen) / elapsedMs : 0,
      elapsedMs,
      gradNorm: undefined,
      memory: optimizer?.memory?.() ?? { bytes: 0, source: 'not reported' },
    };
  };
  const context = (): TrainerContext => ({
    progress: progress(),
    state,
    control,
    description: options.description ?? 'tf.LayersModel.fit',
  });
  const emit = async (run: (callback: TrainerCallback, ctx: TrainerContext) => unknown) => {
    const ctx = context();
    for (const callback of callbacks) await run(callback, ctx);
  };
  const log = async (entry: LogEntry) => {
    state.logHistory.push(entry);
    await emit((c, ctx) => c.onLog?.(ctx, entry));
  };

  return {
    async onTrainBegin() {
      await emit((c, ctx) => c.onTrainBegin?.(ctx));
    },
    async onBatchEnd(_batch, logs) {
      step += 1;
      state.globalStep = step;
      state.tokensSeen += tokensPerBatch;
      state.elapsedMs = Date.now() - started;
      loss = logs?.loss ?? Number.NaN;
      logLoss += loss;
      logCount += 1;
      await emit((c, ctx) => c.onStepEnd?.(ctx));
      const last = optimizer?.lastStep;
      if (last?.switched && last.updatedBlock !== undefined && last.activeBlock !== undefined) {
        const change = { from: last.updatedBlock, to: last.activeBlock };
        await emit((c, ctx) => c.onBlockSwitch?.(ctx, change));
      }
      if (step % loggingSteps === 0 || step === totalSteps) {
        const p = progress();
        await log({
          step,
          epoch: Number(p.epoch.toFixed(4)),
          loss: logLoss / logCount,
          ...(optimizer?.lr !== undefined ? { learning_rate: optimizer.lr } : {}),
          ...(p.activeBlock !== undefined ? { active_block: p.activeBlock } : {}),
          tokens_per_second: p.tokensPerSecond,
          memory_bytes: p.memory.bytes,
        });
        logLoss = 0;
        logCount = 0;
      }
    },
    async onEpochEnd(epoch, logs) {
      state.epoch = epoch + 1;
      const evaluation: Record<string, number> = {};
      for (const [key, value] of Object.entries(logs ?? {})) {
        if (key.startsWith('val_')) evaluation[`eval_${key.slice(4)}`] = value;
      }
      if (Object.keys(evaluation).length > 0) {
        await log({ step, epoch: state.epoch, ...evaluation });
        await emit((c, ctx) => c.onEvaluate?.(ctx, evaluation));
      }
    },
    async onTrainEnd() {
      await emit((c, ctx) => c.onTrainEnd?.(ctx));
    },
  };
}
