/**
 * @badam/runner — the kit BAdam's experiment runners (`badam-llama`, `badam-roberta`) are built on: the
 * shared flags with one validation, embedded defaults, flags -> core's plan -> the model's backend factory
 * -> core's Trainer (the same for `--backend tfjs|cuda|cpu`), callbacks + checkpoints + resume + results in one
 * call, and errors as exit codes. A new runner writes its model (bound to its backend), data and outputs;
 * the training loop is this kit's.
 *
 * @packageDocumentation
 */

// The methods are core's (its plan decides what each trains); the runners' flags pick them.
export { FINE_TUNING_METHODS, type FineTuningMethod } from '@badam/core';
export {
  COMPARISON_FLAGS,
  type ComparisonCommandRun,
  type ComparisonPlan,
  comparisonCommand,
  resolveComparisonPlan,
  runComparisonCommand,
} from './comparison-command.js';
export { type FineTuneResult, type FineTuneSpec, fineTune, writeRunResults } from './fine-tune.js';
export { type LaunchRanksOptions, launchRanks } from './launch-ranks.js';
export { METHOD_FLAGS, methodAccepts } from './method-flags.js';
export { packageVersion } from './package-version.js';
export { planRun, type RunPlanInput, trainingSettingsOf } from './plan-run.js';
export {
  type AutoBackendChoice,
  chooseAutoBackend,
  type PrepareBackendOptions,
  type PreparedModel,
  prepareRunBackend,
  resolveAutoBackend,
} from './prepare-run-backend.js';
export { type RankEnvironment, rankEnvironmentOf } from './rank-environment.js';
export { FollowerCheckpointStore, type RankGroup, RankInterruptCallback } from './rank-group.js';
export { exitCodeOf, runCli } from './run-cli.js';
export {
  isDeviceBackend,
  RUN_BACKENDS,
  RUN_FLAGS,
  type RunBackendName,
  type RunFlagName,
  type RunnerFlagOptions,
  runnerFlags,
} from './run-flags.js';
export {
  applyEmbeddedDefaults,
  type CudaDeviceChoice,
  DEFAULT_LOGGING_STEPS,
  flagName,
  parseRunnerCommand,
  type RunnerCommandSpec,
  type RunnerDialect,
  type RunOptionDefaults,
  type RunOptions,
  resolveRunOptions,
} from './run-options.js';
export { prepareRunOutputDir, releaseRunOutputDirs } from './run-output-dir.js';
export { checkResume, type RunSettings, runSettingsOf } from './run-settings.js';
export type { RunnerModel } from './runner-model.js';
export {
  COMPARISON_BAND,
  type ComparisonCell,
  type ComparisonCellResult,
  type ComparisonMetric,
  type ComparisonReport,
  type ComparisonRow,
  type ComparisonSelectionRow,
  comparisonRunOptions,
  EVAL_LOSS_METRIC,
  formatRate,
  runSeedComparison,
  type SeedComparisonSpec,
  type TrainedCell,
} from './seed-comparison.js';
export { formatMeanSd, type SeedSummary, summarizeSeeds } from './seed-statistics.js';
export {
  ModelNotSavedError,
  type SaveTrainedModelOptions,
  saveTrainedModel,
} from './trained-model-save.js';
export { TrainingDivergedError } from './training-diverged-error.js';
