/**
 * badam-roberta — fine-tuning RoBERTa / BERT encoders on SuperGLUE with BAdam on TensorFlow.js: the runner
 * of the BAdam paper's encoder experiments, with the paper's flags, and an embedded default that trains a
 * built-in tiny RoBERTa on a generated sentence-pair task on a laptop CPU.
 *
 * @packageDocumentation
 */

export { EMBEDDED_DEFAULTS, robertaOptionsFrom, runRobertaCommand } from './command.js';
export { type RobertaComparisonSettings, runRobertaComparison } from './compare.js';
export { generatedPairTask, TINY_ROBERTA_CONFIG } from './embedded-task.js';
export {
  classificationTask,
  collateItems,
  type EncodedItem,
  type EncoderRowsBatch,
  encodeItems,
  itemDataSource,
} from './encoder-batches.js';
export { predictionRecords, predictTask, taskMetrics, type ValPrediction } from './evaluate-task.js';
export {
  methodOf,
  ROBERTA_DIALECT,
  ROBERTA_FLAGS,
  type RobertaOptions,
  resolveRobertaOptions,
} from './options.js';
export {
  defaultSuperGlueDir,
  encoderRunnerModel,
  type RobertaInputs,
  type RobertaRunResult,
  type RunIO,
  runSuperGlue,
} from './run-superglue.js';
