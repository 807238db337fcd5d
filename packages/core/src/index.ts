/**
 * @badam/core — BAdam's framework-agnostic core: block partitions, switch schedules, the BlockOptimizer
 * engine and its backend contract, the plan of a run (`planTraining`: method, optimizer, partition) and the
 * factory contract every backend package implements (`TrainerBackendFactory`), learning-rate schedules and
 * the memory model. It imports no tensor library; backends such as `@badam/tfjs` and `@badam/cuda`
 * implement {@link BlockBackend} and export a `TrainerBackendFactory`.
 *
 * @packageDocumentation
 */

export {
  BUILTIN_CONFIGS,
  BUILTIN_MODEL_NAMES,
  type BuiltinModelName,
} from './architectures/builtin-configs.js';
export {
  type LlamaConfig,
  llamaConfigFromHf,
  llamaConfigToHf,
  type RopeScaling,
} from './architectures/llama-config.js';
export type {
  DecoderArchitecture,
  EncoderArchitecture,
  EncoderHead,
  ModelArchitecture,
  ModelFamily,
} from './architectures/model-architecture.js';
export { parametersOf } from './architectures/parameters-of.js';
export {
  HF_CONFIG_LIMITS,
  type ParseHfConfigOptions,
  parseHfConfig,
  SUPPORTED_MODEL_TYPES,
} from './architectures/parse-hf-config.js';
export { ropeInverseFrequencies, ropeTables } from './architectures/rope.js';
export {
  CHECKPOINT_DIR,
  CHECKPOINT_FILES,
  type CheckpointFileDigest,
  type CheckpointManifest,
  checkpointDirName,
  checkpointJson,
  checkpointManifest,
  checkpointStepOf,
  checkpointTempDirName,
  checkpointTimeline,
  LEGACY_TRAINER_STATE_FILE,
  type ListedCheckpoint,
  listedCheckpoint,
  newestFirst,
  replacedCheckpointDirName,
  requiredCheckpointFiles,
  trainerStateFileOf,
  UNFINISHED_CHECKPOINT,
  unlistedCheckpointFiles,
} from './checkpoint/checkpoint-format.js';
export type { Checkpoint, CheckpointStore } from './checkpoint/checkpoint-store.js';
export {
  type AdamParameterState,
  adamStateTensors,
  OPTIMIZER_STATE_KEYS,
  optimizerTensorName,
  readAdamState,
  tensorsByName,
} from './checkpoint/optimizer-tensors.js';
export {
  type FlagSpec,
  type FlagValues,
  flagHelp,
  parseFlags,
  parseFlagsExplicit,
  UsageError,
} from './cli/flags.js';
export { TRAINING_DEFAULTS } from './defaults.js';
export { bytesPerElement, DTYPES, type DType, isDType, parseDType } from './dtype.js';
export { BadamOptionError, BadamPartitionError, BadamStateError, describeValue } from './errors.js';
export { formatBytes, formatCount, formatDuration } from './format.js';
export {
  createLrSchedule,
  LR_SCHEDULE_TYPES,
  type LrScheduleOptions,
  type LrScheduleType,
  learningRateAt,
} from './lr-schedule.js';
export { type ActivationWorkload, estimateActivationBytes } from './memory/activation-memory.js';
export { type DeviceFit, type DeviceFitOptions, largestMicroBatches } from './memory/device-fit.js';
export {
  estimateMemory,
  type MemoryEstimate,
  type MemoryEstimateOptions,
  seedMemoryEstimate,
  TRAINING_METHODS,
  type TrainingMethod,
} from './memory/estimate-memory.js';
export {
  type LlamaStepDType,
  type LlamaStepMemory,
  type LlamaStepWorkload,
  llamaStepMemory,
} from './memory/llama-step-memory.js';
export {
  ARRAY_DTYPE_BYTES,
  type ArrayDataFor,
  type ArrayDType,
  isFiniteArray,
  type NamedArray,
  nonFiniteArrays,
} from './named-array.js';
export { roundToBfloat16, roundToDType, roundToFloat16 } from './numeric/round-to-dtype.js';
export {
  type AdamWConfig,
  type AdamWStep,
  adamwUpdate,
  type ResolvedAdamWConfig,
  resolveAdamWConfig,
} from './optimizer/adamw.js';
export type {
  BackendMemoryReport,
  BlockActivation,
  BlockBackend,
  BlockUpdate,
  CheckpointableBlockBackend,
  MemoryKind,
  TrainableParameter,
} from './optimizer/block-backend.js';
export {
  BlockOptimizer,
  type BlockOptimizerOptions,
  type BlockOptimizerState,
  type StepOutcome,
} from './optimizer/block-optimizer.js';
export {
  clipGradNormOf,
  GradientAccumulation,
  type UpdateScale,
} from './optimizer/gradient-accumulation.js';
export { consoleLog, type LogFn, type LogLevel } from './optimizer/log.js';
export {
  adamwConfigOf,
  isOptimizerDescription,
  OPTIMIZER_TYPES,
  type OptimizerDescription,
  type ResolvedOptimizerDescription,
  resolveOptimizerDescription,
} from './optimizer/optimizer-description.js';
export {
  MASK_MODES,
  type MaskMode,
  type UpdateMaskOptions,
} from './optimizer/update-mask-options.js';
export {
  type NamedParameterInfo,
  numel,
  parameterBytes,
  totalElements,
  validateNamedParameters,
} from './parameters.js';
export { type Block, BlockPartition, type BlockPartitionOptions } from './partition/block-partition.js';
export { type InferBlockPrefixesOptions, inferBlockPrefixes } from './partition/infer-block-prefixes.js';
export {
  embeddingPrefixOf,
  isLoraParameter,
  isNoDecayParameter,
  layerPrefixOf,
  loraAdaptedModuleOf,
  owningModuleOf,
} from './partition/parameter-roles.js';
export {
  BLOCK_PARTITION_PRESETS,
  type BlockPartitionPreset,
  blockPrefixesForPreset,
} from './partition/presets.js';
export { isTrainedByRatio } from './partition/ratio-trained.js';
export {
  FINE_TUNING_METHOD_SPECS,
  FINE_TUNING_METHODS,
  type FineTuningMethod,
  type FineTuningMethodSpec,
} from './plan/fine-tuning-methods.js';
export { baseParametersOf, estimatePlanMemory, trainedElements } from './plan/plan-memory.js';
export {
  checkPlannedParameters,
  planTraining,
  type TrainingPlanInput,
  type TrainingSettings,
} from './plan/plan-training.js';
export type {
  BlockOptimizerPlan,
  ModelPartition,
  PlannedBlockOptimizerOptions,
  PlannedPartition,
  RatioOptimizerPlan,
  TrainingPlan,
} from './plan/training-plan.js';
export { SeededRandom, type SeededRandomState } from './random.js';
export { ReferenceBackend, type ReferenceParameter } from './reference/reference-backend.js';
export { type ReferenceModel, ReferenceTrainerBackend } from './reference/reference-trainer-backend.js';
export {
  BlockSchedule,
  type BlockScheduleOptions,
  type BlockScheduleState,
  type ScheduleAdvance,
  SWITCH_MODES,
  type SwitchMode,
  validateSwitchBlockEvery,
} from './schedule/block-schedule.js';
export {
  type SwitchBlockEverySuggestionInput,
  suggestSwitchBlockEvery,
} from './schedule/suggest-switch-block-every.js';
export { BlockTrainer, type BlockTrainerOptions, type BlockTrainerTask } from './trainer/block-trainer.js';
export { arrayDataSource, type DataSource } from './trainer/data-source.js';
export type { RunWatcher } from './trainer/run-watcher.js';
export { smoothingWeight, smoothSeries } from './trainer/smooth-series.js';
export { Trainer, type TrainerOptions, type TrainResult } from './trainer/trainer.js';
export type {
  EvaluationResult,
  MicroBatchResult,
  OptimizerStepResult,
  TrainerBackend,
  TrainingSnapshot,
} from './trainer/trainer-backend.js';
export type {
  BackendModel,
  PlannedTrainerBackend,
  TrainerBackendFactory,
} from './trainer/trainer-backend-factory.js';
export type {
  LogEntry,
  LossVerdict,
  TrainerCallback,
  TrainerContext,
  TrainerControl,
  TrainerProgress,
} from './trainer/trainer-callback.js';
export { type BlockSwitchRecord, type TrainerLogLine, trainerLogLine } from './trainer/trainer-log-line.js';
export { isTrainerState, type TrainerState } from './trainer/trainer-state.js';
export { optionWithDeprecatedName, requireInteger, requireNumber } from './validation.js';
