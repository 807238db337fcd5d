/**
 * badam-llama — instruction fine-tuning of Llama-family models with BAdam on TensorFlow.js or on an NVIDIA
 * GPU (`--backend cuda`, @badam/cuda): the runner of the BAdam paper's Alpaca experiments, with
 * LLaMA-Factory's flags, and an embedded default that instruction-tunes a built-in tiny Llama (pretrained,
 * shipped with the package) on a laptop CPU.
 *
 * @packageDocumentation
 */

// The embedded default's model config and data are @badam/embedded's (the browser page uses them too).
export {
  BUILTIN_INITIALIZER_RANGE,
  builtinLlamaConfig,
  generatedCorpus,
  generatedInstructions,
  makeInstruction,
  TASKS,
  TINY_LLAMA_CONFIG,
} from '@badam/embedded';
export { CHAT_FLAGS, runChat } from './chat.js';
export { runCommand, trainOptionsFrom } from './command.js';
export { type ComparisonSettings, runComparison } from './compare.js';
export { type DeviceRunModel, deviceDtype, deviceLlamaRunnerModel, loadDeviceLlama } from './device-model.js';
export { deviceBatch, deviceCausalLmTask } from './device-training-task.js';
export {
  EMBEDDED_DEFAULTS,
  type EmbeddedResult,
  type EmbeddedSettings,
  embeddedStart,
  runEmbeddedDefault,
} from './embedded.js';
export {
  DEFAULT_PRETRAIN_SETTINGS,
  EMBEDDED_PRETRAINED_DIR,
  loadEmbeddedPretrained,
  lossPer100Steps,
  PRETRAIN_FLAGS,
  PRETRAINED_STEPS,
  type PretrainingRecord,
  type PretrainSettings,
  runPretraining,
} from './embedded-pretrained.js';
export { type Prediction, predictExamples } from './predict.js';
export { type RunInputs, type RunIO, runTraining, type TrainRunResult } from './run-training.js';
export { resolveTrainOptions, TRAIN_FLAGS, type TrainOptions } from './train-options.js';
