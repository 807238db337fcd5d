import { type FlagSpec, type FlagValues, UsageError } from '@badam/core';
import { CHAT_TEMPLATES } from '@badam/data';
import { TFJS_BACKEND_FLAGS } from '@badam/tfjs';

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
    choices: Object.keys(CHAT_TEMPLATES),
    help: 'chat template (default: alpaca; the built-in model uses default)',
  },
  cutoff_len: { type: 'integer', min: 2, default: 1024, help: 'most tokens per example' },
  finetuning_type: {
    type: 'string',
    choices: ['block', 'full', 'lora', 'sparse'],
    default: 'block',
    help: 'BAdam, full Adam, LoRA or BlockOptimizerRatio',
  },
  switch_block_every: {
    type: 'integer',
    help: 'BAdam: optimizer steps per block, -1 never switches (default: min(max(n/(B*D), 50), 100))',
  },
  switch_mode: {
    type: 'string',
    choices: ['ascending', 'descending', 'random', 'fixed'],
    default: 'ascending',
    help: 'BAdam: block order',
  },
  start_block: { type: 'integer', min: 0, help: 'BAdam: first block' },
  include_embedding: { type: 'boolean', default: false, help: 'BAdam: the embedding is a block' },
  include_lm_head: { type: 'boolean', default: false, help: 'BAdam: final norm and lm_head form a block' },
  badam_verbose: {
    type: 'integer',
    min: 0,
    default: 1,
    help: 'BAdam: 0 quiet, 1 switches, 2 trainable parameters',
  },
  update_ratio: { type: 'number', help: 'sparse: fraction of each parameter updated (default 0.1)' },
  mask_mode: {
    type: 'string',
    choices: ['adjacent', 'scatter'],
    help: 'sparse: mask layout (default adjacent)',
  },
  lora_rank: { type: 'integer', min: 1, help: 'LoRA rank (default 8)' },
  lora_alpha: { type: 'number', help: 'LoRA alpha (default 2 x rank)' },
  lora_dropout: { type: 'number', help: 'LoRA dropout (default 0)' },
  lora_target: { type: 'string', help: 'LoRA target modules, comma-separated, or all (default all)' },
  per_device_train_batch_size: { type: 'integer', min: 1, default: 4, help: 'micro-batch size' },
  per_device_eval_batch_size: { type: 'integer', min: 1, default: 4, help: 'evaluation batch size' },
  gradient_accumulation_steps: {
    type: 'integer',
    min: 1,
    default: 1,
    help: 'micro-batches per optimizer step',
  },
  learning_rate: { type: 'number', min: 0, default: 1e-5, help: 'peak learning rate' },
  lr_scheduler_type: {
    type: 'string',
    choices: ['constant', 'linear', 'cosine'],
    default: 'linear',
    help: 'learning-rate schedule',
  },
  warmup_ratio: { type: 'number', min: 0, default: 0, help: 'warmup as a fraction of the steps' },
  warmup_steps: { type: 'integer', min: 0, help: 'warmup steps (overrides warmup_ratio)' },
  weight_decay: {
    type: 'number',
    min: 0,
    default: 0,
    help: 'AdamW decoupled weight decay (not on biases and norms)',
  },
  max_grad_norm: { type: 'number', min: 0, default: 1, help: 'global-norm clipping, 0 disables' },
  num_train_epochs: { type: 'number', min: 0, default: 3, help: 'passes over the training data' },
  max_steps: { type: 'integer', min: 1, help: 'optimizer steps (overrides num_train_epochs)' },
  val_size: {
    type: 'number',
    min: 0,
    default: 0,
    help: 'validation split: a fraction, or a number of examples',
  },
  eval_steps: { type: 'integer', min: 1, help: 'evaluate every N steps (needs val_size)' },
  logging_steps: { type: 'integer', min: 1, default: 10, help: 'log every N steps' },
  save_steps: { type: 'integer', min: 1, help: 'checkpoint every N steps' },
  save_total_limit: { type: 'integer', min: 1, default: 2, help: 'checkpoints kept' },
  output_dir: {
    type: 'string',
    help: 'where checkpoints, logs, plots and the model go (default: output/<finetuning_type>)',
  },
  overwrite_output_dir: { type: 'boolean', default: false, help: 'reuse a non-empty output directory' },
  resume_from_checkpoint: {
    type: 'string',
    help: 'a checkpoint directory, or true for the latest in output_dir',
  },
  plot_loss: { type: 'boolean', default: false, help: 'write training_loss.png' },
  bf16: {
    type: 'boolean',
    default: false,
    help: 'bf16 weights (on tfjs: the saved model is written in bf16; training stays fp32)',
  },
  backend: { type: 'string', choices: ['tfjs', 'cuda'], default: 'tfjs', help: 'tensor backend' },
  ...TFJS_BACKEND_FLAGS,
  gradient_checkpointing: {
    type: 'boolean',
    default: false,
    help: 'recompute layer activations in backward',
  },
  group_by_length: { type: 'boolean', default: false, help: 'batch examples of similar length' },
  seed: {
    type: 'integer',
    min: 0,
    default: 42,
    help: "seed of data order, initialisation and BAdam's random order",
  },
  do_predict: {
    type: 'boolean',
    default: false,
    help: 'generate answers for the validation set into generated_predictions.jsonl',
  },
  max_new_tokens: { type: 'integer', min: 1, default: 64, help: 'generation: most new tokens' },
  temperature: { type: 'number', min: 0, default: 0, help: 'generation: 0 is greedy' },
  top_p: { type: 'number', min: 0, default: 1, help: 'generation: nucleus sampling' },
  help: { type: 'boolean', default: false, help: 'show this help' },
};

/** Validated training options. */
export interface TrainOptions {
  stage: 'sft' | 'pt';
  modelNameOrPath: string | undefined;
  dataset: string | undefined;
  datasetDir: string;
  template: string | undefined;
  cutoffLen: number;
  finetuningType: 'block' | 'full' | 'lora' | 'sparse';
  switchBlockEvery: number | undefined;
  switchMode: 'ascending' | 'descending' | 'random' | 'fixed';
  startBlock: number | undefined;
  includeEmbedding: boolean;
  includeLmHead: boolean;
  badamVerbose: 0 | 1 | 2;
  updateRatio: number;
  maskMode: 'adjacent' | 'scatter';
  loraRank: number;
  loraAlpha: number;
  loraDropout: number;
  loraTarget: string[] | 'all';
  batchSize: number;
  evalBatchSize: number;
  gradientAccumulationSteps: number;
  learningRate: number;
  lrSchedulerType: 'constant' | 'linear' | 'cosine';
  warmupRatio: number;
  warmupSteps: number | undefined;
  weightDecay: number;
  maxGradNorm: number;
  numTrainEpochs: number;
  maxSteps: number | undefined;
  valSize: number;
  evalSteps: number | undefined;
  loggingSteps: number;
  saveSteps: number | undefined;
  saveTotalLimit: number;
  outputDir: string;
  overwriteOutputDir: boolean;
  resumeFromCheckpoint: string | undefined;
  plotLoss: boolean;
  bf16: boolean;
  tfjsBackend: 'auto' | 'cpu' | 'wasm' | 'tensorflow';
  nativeKernels: boolean;
  gradientCheckpointing: boolean;
  groupByLength: boolean;
  seed: number;
  doPredict: boolean;
  maxNewTokens: number;
  temperature: number;
  topP: number;
}

/**
 * Turns parsed flags into {@link TrainOptions}, rejecting combinations that cannot mean anything with a
 * message that says what to do.
 */
export function resolveTrainOptions(v: FlagValues): TrainOptions {
  const type = v.finetuning_type as TrainOptions['finetuningType'];
  const onlyFor = (flags: string[], wanted: Array<TrainOptions['finetuningType']>) => {
    for (const flag of flags) {
      if (v[flag] !== undefined && !wanted.includes(type)) {
        throw new UsageError(
          `--${flag} applies to --finetuning_type ${wanted.join(' or ')}, but this run uses ${type}: drop it or switch the finetuning type`,
        );
      }
    }
  };
  onlyFor(['switch_block_every'], ['block', 'sparse']);
  onlyFor(['start_block'], ['block']);
  onlyFor(['update_ratio', 'mask_mode'], ['sparse']);
  onlyFor(['lora_rank', 'lora_alpha', 'lora_dropout', 'lora_target'], ['lora']);
  if (v.backend === 'cuda') {
    throw new UsageError(
      '--backend cuda is not available yet: @badam/cuda does not run models so far; use --backend tfjs',
    );
  }
  if (v.resume_from_checkpoint !== undefined && v.overwrite_output_dir === true) {
    throw new UsageError(
      '--resume_from_checkpoint and --overwrite_output_dir contradict each other: resuming needs the output directory as it is',
    );
  }
  if (v.eval_steps !== undefined && v.val_size === 0) {
    throw new UsageError('--eval_steps needs a validation set: set --val_size (e.g. 0.1)');
  }
  if (v.do_predict === true && v.val_size === 0) {
    throw new UsageError('--do_predict generates answers for the validation set: set --val_size (e.g. 0.1)');
  }
  if (v.stage === 'pt' && v.template !== undefined) {
    throw new UsageError('--template applies to --stage sft; pretraining uses raw text');
  }
  const updateRatio = (v.update_ratio as number | undefined) ?? 0.1;
  if (!(updateRatio > 0 && updateRatio <= 1))
    throw new UsageError(`--update_ratio must be in (0, 1], got ${updateRatio}`);
  const loraRank = (v.lora_rank as number | undefined) ?? 8;
  const loraDropout = (v.lora_dropout as number | undefined) ?? 0;
  if (!(loraDropout >= 0 && loraDropout < 1))
    throw new UsageError(`--lora_dropout must be in [0, 1), got ${loraDropout}`);
  const target = (v.lora_target as string | undefined) ?? 'all';
  const sb = v.switch_block_every as number | undefined;
  if (sb !== undefined && sb !== -1 && sb < 1)
    throw new UsageError(`--switch_block_every must be >= 1 or -1, got ${sb}`);
  const verbose = v.badam_verbose as number;
  if (verbose > 2) throw new UsageError(`--badam_verbose must be 0, 1 or 2, got ${verbose}`);
  return {
    stage: v.stage as TrainOptions['stage'],
    modelNameOrPath: v.model_name_or_path as string | undefined,
    dataset: v.dataset as string | undefined,
    datasetDir: v.dataset_dir as string,
    template: v.template as string | undefined,
    cutoffLen: v.cutoff_len as number,
    finetuningType: type,
    switchBlockEvery: sb,
    switchMode: v.switch_mode as TrainOptions['switchMode'],
    startBlock: v.start_block as number | undefined,
    includeEmbedding: v.include_embedding as boolean,
    includeLmHead: v.include_lm_head as boolean,
    badamVerbose: verbose as 0 | 1 | 2,
    updateRatio,
    maskMode: ((v.mask_mode as string | undefined) ?? 'adjacent') as TrainOptions['maskMode'],
    loraRank,
    loraAlpha: (v.lora_alpha as number | undefined) ?? 2 * loraRank,
    loraDropout,
    loraTarget:
      target === 'all'
        ? 'all'
        : target
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean),
    batchSize: v.per_device_train_batch_size as number,
    evalBatchSize: v.per_device_eval_batch_size as number,
    gradientAccumulationSteps: v.gradient_accumulation_steps as number,
    learningRate: v.learning_rate as number,
    lrSchedulerType: v.lr_scheduler_type as TrainOptions['lrSchedulerType'],
    warmupRatio: v.warmup_ratio as number,
    warmupSteps: v.warmup_steps as number | undefined,
    weightDecay: v.weight_decay as number,
    maxGradNorm: v.max_grad_norm as number,
    numTrainEpochs: v.num_train_epochs as number,
    maxSteps: v.max_steps as number | undefined,
    valSize: v.val_size as number,
    evalSteps: v.eval_steps as number | undefined,
    loggingSteps: v.logging_steps as number,
    saveSteps: v.save_steps as number | undefined,
    saveTotalLimit: v.save_total_limit as number,
    outputDir: (v.output_dir as string | undefined) ?? `output/${type}`,
    overwriteOutputDir: v.overwrite_output_dir as boolean,
    resumeFromCheckpoint: v.resume_from_checkpoint as string | undefined,
    plotLoss: v.plot_loss as boolean,
    bf16: v.bf16 as boolean,
    tfjsBackend: v.tfjs_backend as TrainOptions['tfjsBackend'],
    nativeKernels: v.native_kernels as boolean,
    gradientCheckpointing: v.gradient_checkpointing as boolean,
    groupByLength: v.group_by_length as boolean,
    seed: v.seed as number,
    doPredict: v.do_predict as boolean,
    maxNewTokens: v.max_new_tokens as number,
    temperature: v.temperature as number,
    topP: v.top_p as number,
  };
}
