/**
 * @badam/runner — the kit BAdam's experiment runners (`badam-llama`, `badam-roberta`) are built on: the
 * shared flags with one validation, embedded defaults, the fine-tuning methods as one table (block, full,
 * LoRA, sparse: optimizer plan, trained parameters, memory estimate), the trainer backend for
 * `--backend tfjs|cuda`, trainer + callbacks + checkpoints + resume + results in one call, and errors as
 * exit codes. A new runner writes its model, data and outputs; the training loop is this kit's.
 *
 * @packageDocumentation
 */
export {
  COMPARISON_FLAGS,
  type ComparisonPlan,
  comparisonCommand,
  resolveComparisonPlan,
} from './comparison-flags.js';
export { type FineTuneResult, type FineTuneSpec, fineTune, writeRunResults } from './fine-tune.js';
export {
  estimateRunMemory,
  FINE_TUNING_METHODS,
  type FineTuningMethod,
  METHOD_FLAGS,
  METHODS,
  type MethodSpec,
  type ModelPartition,
  methodAccepts,
  type OptimizerPlan,
  type PlanInput,
  trainedElements,
  trainedGroups,
} from './fine-tuning-methods.js';
export { evaluateHeldOut, type HeldOutEvaluation } from './held-out-evaluation.js';
export { packageVersion } from './package-version.js';
export {
  createTrainerBackend,
  cudaDeviceLabel,
  prepareRunBackend,
  type RunBackend,
  type RunnerCudaModel,
  type RunnerModel,
  runDevice,
  runnerParameters,
} from './run-backend.js';
export { exitCodeOf, runCli } from './run-cli.js';
export {
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
export { prepareRunOutputDir } from './run-output-dir.js';
export { checkResume, type RunSettings, runSettingsOf } from './run-settings.js';
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
export { TrainingDivergedError } from './training-diverged-error.js';
