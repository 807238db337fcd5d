/**
 * @badam/embedded — what the runners' embedded default trains, for every front end that runs it
 * (`badam-llama` with no model or data, the browser page of badam-board): the built-in tiny Llama's config,
 * the generated instruction tasks (copy, reverse, sort, add) and pretraining text, and the pretrained start
 * that ships in `assets/embedded-pretrained`. Tensor-free: the models and backends are other packages'.
 *
 * @packageDocumentation
 */
export { embeddedPretrainedDir } from './embedded-pretrained-dir.js';
export {
  type GeneratedInstruction,
  generatedCorpus,
  generatedInstructions,
  makeInstruction,
  TASKS,
  type Task,
} from './generated-instructions.js';
export { BUILTIN_INITIALIZER_RANGE, builtinLlamaConfig, TINY_LLAMA_CONFIG } from './tiny-llama.js';
