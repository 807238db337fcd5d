/**
 * @badam/callbacks — hooks for `@badam/core`'s Trainer: a progress bar (plain lines off a terminal),
 * `trainer_log.jsonl`, `training_loss.png`, safetensors checkpoints with exact resume, early stopping, the
 * NaN/Inf loss guard, Ctrl-C handling, BAdam's block-switch log, the best checkpoint
 * (`load_best_model_at_end`), TensorBoard event files, and an adapter for `tf.LayersModel.fit`.
 *
 * @packageDocumentation
 */

/** The loss smoothing (LLaMA-Factory's weight, debiased as TensorBoard's) and the log line format live in core (the board's page uses them too). */
/** The checkpoint format's file names are core's (`checkpoint-format.ts`); re-exported where they were. */
export { type BlockSwitchRecord, CHECKPOINT_FILES, smoothSeries } from '@badam/core';
export {
  type BandPlotOptions,
  type BandPoint,
  type BandSeries,
  bandOf,
  renderBandPlot,
  writeBandPlot,
} from './band-plot.js';
export {
  BEST_MODEL_STATE_KEY,
  BestModelCallback,
  type BestModelCallbackOptions,
  type BestModelState,
} from './best-model-callback.js';
export { BlockSwitchLogCallback } from './block-switch-log-callback.js';
export {
  CheckpointError,
  type CheckpointWriteOptions,
  readCheckpointDirectory,
  readCheckpointWeights,
  writeCheckpointDirectory,
} from './checkpoint-directory.js';
export { EarlyStoppingCallback, type EarlyStoppingOptions } from './early-stopping-callback.js';
export {
  type FitCallbackHooks,
  type FitCallbackOptions,
  type FitOptimizerView,
  fitCallbacks,
} from './fit-callback-adapter.js';
export { formatDuration, formatLr, formatMemory } from './format.js';
export {
  HF_TRAINER_STATE,
  HF_TRAINER_STATE_FIELDS,
  type HfLogEntry,
  type HfTrainerState,
  type HfTrainingArguments,
  huggingFaceTrainerState,
} from './hf-trainer-state.js';
export { InterruptCallback } from './interrupt-callback.js';
export {
  type LineChartFrame,
  LossPlotCallback,
  type LossPlotDataset,
  type LossPlotOptions,
  type LossSeries,
  lossPlotDatasets,
  lossSeriesOf,
  MARKER_COLOR,
  renderLineChart,
  renderLossPlot,
} from './loss-plot.js';
export { LossSpikeMonitor, type LossSpikeMonitorOptions } from './loss-spike-monitor.js';
export {
  MetricsLogCallback,
  readTrainerLog,
  TRAINER_LOG,
} from './metrics-log-callback.js';
export { NonFiniteLossGuard } from './non-finite-loss-guard.js';
export {
  holdsEarlierWork,
  type PreparedOutputDir,
  type PrepareOutputDirOptions,
  prepareOutputDir,
  RUN_OUTPUTS,
  UNFINISHED_SAVE,
  writeResultsJson,
} from './output-dir.js';
export {
  checkOutputDirFree,
  isOutputDirLocked,
  LOCK_FILE,
  type LockHolder,
  OutputDirLock,
} from './output-dir-lock.js';
export { formatMemoryReport, ProgressCallback, type ProgressCallbackOptions } from './progress-callback.js';
export { type RunCallbacksOptions, type RunIO, runCallbacks } from './run-callbacks.js';
export { type CheckpointStoreOptions, SafetensorsCheckpointStore } from './safetensors-checkpoint-store.js';
export {
  defaultLoggingDir,
  TensorBoardCallback,
  type TensorBoardCallbackOptions,
  tensorBoardScalars,
} from './tensorboard-callback.js';
export {
  crc32c,
  fileVersionEvent,
  maskedCrc32c,
  scalarsEvent,
  TensorBoardEventFile,
  tfRecord,
} from './tensorboard-event-file.js';
