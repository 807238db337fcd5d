import { type FlagSpec, type FlagValues, UsageError } from '@badam/core';
import { CHAT_TEMPLATES } from '@badam/data';
import { LLAMA_LORA_TARGETS, shippedLlamaConfig } from '@badam/models';
import type { FineTuningMethod, RunnerDialect, RunOptions } from '@badam/runner';
import { FINE_TUNING_METHODS, isDeviceBackend, resolveRunOptions, runnerFlags } from '@badam/runner';
import { LLAMA_FACTORY_FLAGS } from './llama-factory-flags.js';
import { refuseHubId } from './model-path.js';

/** How badam-llama's command line names things: LLaMA-Factory's flags. */
export const LLAMA_DIALECT: RunnerDialect = {
  name: 'badam-llama',
  describeMethods: (methods) => `--finetuning_type ${methods.join(' or ')}`,
  methodFlags: {
    lora_rank: ['lora'],
    lora_alpha: ['lora'],
    lora_dropout: ['lora'],
    lora_target: ['lora'],
  },
};

/** The flags of `badam-llama` training, named as in the BAdam paper's scripts and LLaMA-Factory. */
export const TRAIN_FLAGS: Readonly<Record<string, FlagSpec>> = {
  stage: {
    type: 'string',
    choices: ['sft', 'pt'],
    default: 'sft',
    help: 'supervised fine-tuning, or pretraining on raw text',
  },
  model_name_or_path: {
    type: 'string',
    help: 'local Hugging Face model directory (config.json, safetensors, tokenizer.json); default: the built-in tiny Llama',
  },
  dataset: {
    type: 'string',
    help: 'JSON/JSONL file(s) or dataset_info.json name(s), comma-separated; default: generated instructions',
  },
  dataset_dir: { type: 'string', default: 'data', help: 'directory of dataset_info.json' },
  template: {
    type: 'string',
    help: `chat template: ${Object.keys(CHAT_TEMPLATES).join(', ')}, or another of LLaMA-Factory's names (qwen3, mistral, gemma...), which uses the model's own chat_template (tokenizer_config.json); default: the model's chat_template, else alpaca (the built-in model: default)`,
  },
  cutoff_len: {
    type: 'integer',
    min: 2,
    help: "most tokens per example (default 1024, or the model's max_position_embeddings when less)",
  },
  finetuning_type: {
    type: 'string',
    choices: [...FINE_TUNING_METHODS],
    default: 'block',
    help: 'BAdam, full Adam, LoRA or BlockOptimizerRatio',
  },
  include_embedding: { type: 'boolean', default: false, help: 'BAdam: the embedding is a block' },
  include_lm_head: { type: 'boolean', default: false, help: 'BAdam: final norm and lm_head form a block' },
  badam_verbose: {
    type: 'integer',
    min: 0,
    default: 1,
    help: 'BAdam: 0 quiet, 1 switches, 2 trainable parameters',
  },
  lora_rank: { type: 'integer', min: 1, help: 'LoRA rank (default 8)' },
  lora_alpha: { type: 'number', min: 0, exclusiveMin: true, help: 'LoRA alpha (default 2 x rank)' },
  lora_dropout: { type: 'number', help: 'LoRA dropout (default 0)' },
  lora_target: { type: 'string', help: 'LoRA target modules, comma-separated, or all (default all)' },
  train_from_scratch: {
    type: 'boolean',
    default: false,
    help: "random weights (normal(0, config.json's initializer_range), as Hugging Face initialises) from --model_name_or_path's config.json and tokenizer, nothing loaded; also a shipped config: smollm-135m, qwen2.5-0.5b, tinyllama-1.1b",
    aka: 'LLaMA-Factory',
  },
  val_size: {
    type: 'number',
    min: 0,
    default: 0,
    help: 'validation split: a fraction, or a number of examples',
  },
  bf16: {
    type: 'boolean',
    default: false,
    help: 'bf16 weights (cuda: bf16 weights and activations, fp32 masters and Adam state, bf16 checkpoints; tfjs: the saved model is written in bf16, training stays fp32)',
  },
  fp16: {
    type: 'boolean',
    default: false,
    help: 'fp16 weights (cuda: as --bf16 with fp16; tfjs: ignored, it has no 16-bit float)',
  },
  adapter_name_or_path: {
    type: 'string',
    help: 'LoRA adapter folder(s), comma-separated (peft: adapter_config.json, adapter_model.safetensors): with --finetuning_type lora the last one trains on and the others are merged; otherwise all are merged into the model first',
    aka: 'LLaMA-Factory',
  },
  gradient_checkpointing: {
    type: 'boolean',
    default: false,
    help: 'recompute layer activations in backward (tfjs and cuda)',
  },
  group_by_length: { type: 'boolean', default: false, help: 'batch examples of similar length' },
  do_predict: {
    type: 'boolean',
    default: false,
    help: 'generate answers for the validation set (--eval_dataset, or --val_size of --dataset) into generated_predictions.jsonl',
  },
  max_new_tokens: { type: 'integer', min: 1, default: 64, help: 'generation: most new tokens' },
  temperature: { type: 'number', min: 0, default: 0, help: 'generation: 0 is greedy' },
  top_p: {
    type: 'number',
    min: 0,
    exclusiveMin: true,
    max: 1,
    default: 1,
    help: 'generation: nucleus sampling',
  },
  ...runnerFlags({
    // The fastest backend that trains the run: a GPU, else the CPU engine, else tfjs (said at the start).
    defaults: { backend: 'auto' },
    help: {
      switch_block_every:
        'BAdam / sparse: optimizer steps per block, -1 never switches (default: min(max(n/(B*D), 50), 100))',
      eval_steps: 'evaluate every N steps (needs val_size)',
      output_dir: 'where checkpoints, logs, plots and the model go (default: output/<finetuning_type>)',
    },
  }),
  ...LLAMA_FACTORY_FLAGS,
};

/** Validated training options: the runner kit's shared ones and badam-llama's own. */
export interface TrainOptions extends RunOptions {
  stage: 'sft' | 'pt';
  modelNameOrPath: string | undefined;
  /** `--train_from_scratch`: random weights from --model_name_or_path's config.json (see from-scratch.ts). */
  trainFromScratch: boolean;
  dataset: string | undefined;
  datasetDir: string;
  template: string | undefined;
  cutoffLen: number;
  /** The command line set `--cutoff_len` (a default one is shortened to the model's positions; a given one is refused). */
  cutoffLenGiven: boolean;
  includeEmbedding: boolean;
  includeLmHead: boolean;
  loraAlpha: number;
  loraDropout: number;
  loraTarget: string[] | 'all';
  valSize: number;
  /** `--eval_dataset`: evaluation data of its own (instead of splitting `--val_size` off). */
  evalDataset: string | undefined;
  /** `--adapter_name_or_path`: LoRA adapter folders to load (the last trains on with LoRA). */
  adapters: string[];
  /** Train (`--do_train`); false: evaluate (`--do_eval`) and / or predict (`--do_predict`) only. */
  doTrain: boolean;
  /** With `doTrain` false: evaluate into eval_results.json. */
  doEval: boolean;
  /** At most this many examples of each dataset (`--max_samples`). */
  maxSamples: number | undefined;
  /** `--eval_strategy`: `epoch` evaluates once per epoch (the run knows the steps once data is loaded). */
  evalStrategy: 'no' | 'steps' | 'epoch' | undefined;
  bf16: boolean;
  /** fp16 weights (`--fp16`; cuda only, tfjs ignores it). */
  fp16: boolean;
  gradientCheckpointing: boolean;
  groupByLength: boolean;
  doPredict: boolean;
  maxNewTokens: number;
  temperature: number;
  topP: number;
}

/**
 * Turns parsed flags into {@link TrainOptions}: the shared flags through the runner kit's one validation,
 * then badam-llama's own, rejecting combinations that cannot mean anything with a message that says what
 * to do.
 */
export function resolveTrainOptions(v: FlagValues): TrainOptions {
  const method = v.finetuning_type as FineTuningMethod;
  const verbose = v.badam_verbose as number;
  if (verbose > 2) throw new UsageError(`--badam_verbose must be 0, 1 or 2, got ${verbose}`);
  const shared = resolveRunOptions(v, method, LLAMA_DIALECT, {
    outputDir: `output/${method}`,
    ...(v.lora_rank !== undefined ? { loraRank: v.lora_rank as number } : {}),
    badamVerbose: verbose as 0 | 1 | 2,
  });
  const { loraRank } = shared;
  const evalStrategy = v.eval_strategy as TrainOptions['evalStrategy'];
  if (v.bf16 === true && v.fp16 === true)
    throw new UsageError('--bf16 and --fp16 both choose the weights dtype: give one');
  checkDataAndEvaluation(v, evalStrategy);
  checkBackendTakes(v, shared.backend);
  const doTrain = v.do_train !== false;
  if (v.stage === 'pt' && v.template !== undefined) {
    throw new UsageError('--template applies to --stage sft; pretraining uses raw text');
  }
  const loraDropout = (v.lora_dropout as number | undefined) ?? 0;
  if (!(loraDropout >= 0 && loraDropout < 1))
    throw new UsageError(`--lora_dropout must be in [0, 1), got ${loraDropout}`);
  const targets = loraTargetsOf(v);
  const valSize = v.val_size as number;
  if (valSize >= 1 && !Number.isSafeInteger(valSize))
    throw new UsageError(
      `--val_size must be a fraction in [0, 1) or a whole number of examples, got ${valSize}`,
    );
  const modelPath = v.model_name_or_path as string | undefined;
  if (v.train_from_scratch === true && modelPath === undefined)
    throw new UsageError(
      '--train_from_scratch builds the model of --model_name_or_path (a folder with config.json, or smollm-135m, qwen2.5-0.5b, tinyllama-1.1b) with random weights: name one',
    );
  // A shipped config's Hugging Face id names no folder to fetch when the weights are not wanted.
  if (
    modelPath !== undefined &&
    !(v.train_from_scratch === true && shippedLlamaConfig(modelPath) !== undefined)
  )
    refuseHubId(modelPath, 'model_name_or_path');
  return {
    ...shared,
    // Hugging Face's --eval_strategy steps without --eval_steps evaluates every --logging_steps.
    evalSteps:
      evalStrategy === 'no'
        ? undefined
        : evalStrategy === 'steps'
          ? (shared.evalSteps ?? shared.loggingSteps)
          : shared.evalSteps,
    evalStrategy,
    maxSamples: v.max_samples as number | undefined,
    stage: v.stage as TrainOptions['stage'],
    modelNameOrPath: modelPath,
    trainFromScratch: v.train_from_scratch as boolean,
    dataset: v.dataset as string | undefined,
    datasetDir: v.dataset_dir as string,
    template: v.template as string | undefined,
    cutoffLen: (v.cutoff_len as number | undefined) ?? 1024,
    cutoffLenGiven: v.cutoff_len !== undefined,
    includeEmbedding: v.include_embedding as boolean,
    includeLmHead: v.include_lm_head as boolean,
    loraAlpha: (v.lora_alpha as number | undefined) ?? 2 * loraRank,
    loraDropout,
    loraTarget: targets,
    valSize,
    evalDataset: v.eval_dataset as string | undefined,
    adapters: ((v.adapter_name_or_path as string | undefined) ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
    doTrain,
    doEval: v.do_eval === true,
    bf16: v.bf16 as boolean,
    fp16: v.fp16 === true,
    gradientCheckpointing: v.gradient_checkpointing as boolean,
    groupByLength: v.group_by_length as boolean,
    doPredict: v.do_predict as boolean,
    maxNewTokens: v.max_new_tokens as number,
    temperature: v.temperature as number,
    topP: v.top_p as number,
  };
}

/**
 * Refuses evaluation and data flags that cannot mean anything together (no validation set to evaluate on,
 * nothing to train on, two sources of evaluation data), saying what to change.
 */
function checkDataAndEvaluation(v: FlagValues, evalStrategy: TrainOptions['evalStrategy']): void {
  // Evaluation data: a --val_size split, or --eval_dataset.
  const hasValidation = v.val_size !== 0 || v.eval_dataset !== undefined;
  if (v.eval_dataset !== undefined && v.val_size !== 0)
    throw new UsageError(
      `--eval_dataset ${v.eval_dataset} and --val_size ${v.val_size} both give evaluation data: drop one (LLaMA-Factory refuses both too)`,
    );
  const doTrain = v.do_train !== false;
  if (
    doTrain &&
    v.dataset === undefined &&
    v.eval_dataset !== undefined &&
    v.model_name_or_path !== undefined
  )
    throw new UsageError(
      '--eval_dataset without --dataset gives nothing to train on: add --dataset, or --do_train false with --do_eval / --do_predict',
    );
  if (!doTrain && v.model_name_or_path === undefined)
    throw new UsageError(
      '--do_train false evaluates or predicts with a model: give --model_name_or_path (a model folder, a checkpoint, or a LoRA adapter folder)',
    );
  if (!doTrain && !hasValidation)
    throw new UsageError(
      `--do_train false with ${v.do_predict === true ? '--do_predict' : '--do_eval'} needs examples: give --eval_dataset, or --dataset with --val_size`,
    );
  if (evalStrategy === 'no' && v.eval_steps !== undefined) {
    throw new UsageError(
      `--eval_strategy no turns evaluation off, but --eval_steps ${v.eval_steps} asks for it: drop one`,
    );
  }
  if (evalStrategy !== undefined && evalStrategy !== 'no' && !hasValidation) {
    throw new UsageError(
      `--eval_strategy ${evalStrategy} needs a validation set: set --val_size (e.g. 0.1) or --eval_dataset`,
    );
  }
  if (v.eval_steps !== undefined && !hasValidation) {
    throw new UsageError('--eval_steps needs a validation set: set --val_size (e.g. 0.1) or --eval_dataset');
  }
  if (v.do_predict === true && !hasValidation) {
    throw new UsageError(
      '--do_predict generates answers for the validation set: set --val_size (e.g. 0.1) or --eval_dataset',
    );
  }
}

/**
 * Refuses what the device backends (`--backend cuda|cpu`) do not do (adapters, evaluation-only runs,
 * prediction), saying what does; `--backend auto` picks tfjs for such runs.
 */
function checkBackendTakes(v: FlagValues, backend: TrainOptions['backend']): void {
  const doTrain = v.do_train !== false;
  if (!isDeviceBackend(backend)) return;
  if (v.adapter_name_or_path !== undefined)
    throw new UsageError(
      `--adapter_name_or_path loads LoRA adapters on TensorFlow.js only: merge them first (badam-llama export), then train the merged folder with --backend ${backend}`,
    );
  if (!doTrain)
    throw new UsageError(
      `--do_train false evaluates and predicts with TensorFlow.js: drop --backend ${backend} for it (the model is read in fp32 on the host)`,
    );
  if (v.do_predict === true) {
    throw new UsageError(
      `--do_predict generates with TensorFlow.js, and --backend ${backend} keeps the model on the device only (an 8B model does not fit in host fp32): train without --do_predict, then run badam-llama chat on the saved model (or train with --backend tfjs)`,
    );
  }
}

/** `--lora_target`: `all`, or Llama linear layers by name (comma-separated), each checked. */
function loraTargetsOf(v: FlagValues): TrainOptions['loraTarget'] {
  const target = (v.lora_target as string | undefined) ?? 'all';
  const targets =
    target === 'all'
      ? ('all' as const)
      : target
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean);
  for (const module of targets === 'all' ? [] : targets) {
    if (!(LLAMA_LORA_TARGETS as readonly string[]).includes(module))
      throw new UsageError(
        `--lora_target ${module} is not a Llama linear layer: use all, or some of ${LLAMA_LORA_TARGETS.join(', ')}`,
      );
  }
  return targets;
}
