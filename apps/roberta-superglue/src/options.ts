import { type FlagSpec, type FlagValues, UsageError } from '@badam/core';
import { SUPERGLUE_TASKS, type SuperGlueTask } from '@badam/data';
import { TFJS_BACKEND_FLAGS } from '@badam/tfjs';

/** The flags of `badam-roberta`, named as in the BAdam paper's RoBERTa scripts. */
export const ROBERTA_FLAGS: Readonly<Record<string, FlagSpec>> = {
  task_name: {
    type: 'string',
    choices: [...SUPERGLUE_TASKS],
    help: 'SuperGLUE task (default: the embedded generated task)',
  },
  data_dir: {
    type: 'string',
    help: 'folder with <task>/train.jsonl and val.jsonl (default: ../shared/data/superglue)',
  },
  hf_pretrained_model_name: {
    type: 'string',
    help: 'local Hugging Face RoBERTa / BERT directory (default: a built-in tiny RoBERTa)',
  },
  use_block_optim: {
    type: 'boolean',
    default: false,
    help: 'BAdam: blocks are the encoder layers and the task head',
  },
  use_sparse_optim: {
    type: 'boolean',
    default: false,
    help: 'BlockOptimizerRatio (--update_ratio of each matrix)',
  },
  lora_rank: { type: 'integer', min: 0, default: 0, help: 'LoRA rank on query and value; 0 is no LoRA' },
  switch_every: {
    type: 'integer',
    help: 'BAdam / ratio: optimizer steps per block (default 100; -1 never switches)',
  },
  switch_mode: {
    type: 'string',
    choices: ['ascending', 'descending', 'random', 'fixed'],
    default: 'random',
    help: 'BAdam: block order',
  },
  start_block: { type: 'integer', min: 0, help: 'BAdam: first block' },
  train_last_layer: {
    type: 'boolean',
    default: false,
    help: 'BAdam: the task head (and pooler) trains in every block',
  },
  update_ratio: { type: 'number', help: 'sparse: fraction of each parameter updated (default 0.1)' },
  mask_mode: {
    type: 'string',
    choices: ['adjacent', 'scatter'],
    help: 'sparse: mask layout (default adjacent)',
  },
  num_train_epochs: { type: 'number', min: 0, default: 10, help: 'passes over the training set' },
  max_steps: { type: 'integer', min: 1, help: 'optimizer steps (overrides num_train_epochs)' },
  train_batch_size: { type: 'integer', min: 1, default: 16, help: 'examples per step' },
  eval_batch_size: { type: 'integer', min: 1, default: 32, help: 'examples per evaluation batch' },
  learning_rate: { type: 'number', min: 0, default: 1e-5, help: 'peak learning rate' },
  lr_scheduler_type: {
    type: 'string',
    choices: ['constant', 'linear', 'cosine'],
    default: 'linear',
    help: 'learning-rate schedule',
  },
  warmup_ratio: { type: 'number', min: 0, default: 0.06, help: 'warmup as a fraction of the steps' },
  weight_decay: {
    type: 'number',
    min: 0,
    default: 0.1,
    help: 'AdamW decoupled weight decay (not on biases and LayerNorms)',
  },
  max_grad_norm: { type: 'number', min: 0, default: 1, help: 'global-norm clipping, 0 disables' },
  max_seq_length: {
    type: 'integer',
    min: 8,
    default: 256,
    help: 'most tokens per row (pairs are truncated longest-first)',
  },
  eval_every_steps: { type: 'integer', min: 1, help: 'evaluate on the validation set every N steps' },
  logging_steps: { type: 'integer', min: 1, default: 10, help: 'log every N steps' },
  save_steps: { type: 'integer', min: 1, help: 'checkpoint every N steps' },
  resume_from_checkpoint: {
    type: 'string',
    help: 'a checkpoint directory, or true for the latest in output_dir',
  },
  output_dir: {
    type: 'string',
    help: 'where logs, plots, predictions, checkpoints and the model go (default: output/roberta-<task>-<method>)',
  },
  overwrite_output_dir: { type: 'boolean', default: false, help: 'reuse a non-empty output directory' },
  plot_loss: { type: 'boolean', default: true, help: 'write training_loss.png' },
  seed: {
    type: 'integer',
    min: 0,
    default: 42,
    help: 'seed of data order, head initialisation, dropout and block order',
  },
  ...TFJS_BACKEND_FLAGS,
  help: { type: 'boolean', default: false, help: 'show this help' },
};

/** The optimizer a run uses. */
export type Method = 'block' | 'sparse' | 'lora' | 'full';

/** Validated options of a run. */
export interface RobertaOptions {
  taskName: SuperGlueTask | undefined;
  dataDir: string | undefined;
  model: string | undefined;
  method: Method;
  switchEvery: number;
  switchMode: 'ascending' | 'descending' | 'random' | 'fixed';
  startBlock: number | undefined;
  trainLastLayer: boolean;
  updateRatio: number;
  maskMode: 'adjacent' | 'scatter';
  loraRank: number;
  numTrainEpochs: number;
  maxSteps: number | undefined;
  trainBatchSize: number;
  evalBatchSize: number;
  learningRate: number;
  lrSchedulerType: 'constant' | 'linear' | 'cosine';
  warmupRatio: number;
  weightDecay: number;
  maxGradNorm: number;
  maxSeqLength: number;
  evalEverySteps: number | undefined;
  loggingSteps: number;
  saveSteps: number | undefined;
  resumeFromCheckpoint: string | undefined;
  outputDir: string;
  overwriteOutputDir: boolean;
  plotLoss: boolean;
  seed: number;
  tfjsBackend: 'auto' | 'cpu' | 'wasm' | 'tensorflow';
  nativeKernels: boolean;
}

/** Turns parsed flags into options, rejecting combinations that cannot mean anything with a message that says what to do. */
export function resolveRobertaOptions(v: FlagValues): RobertaOptions {
  const block = v.use_block_optim === true;
  const sparse = v.use_sparse_optim === true;
  const lora = (v.lora_rank as number) > 0;
  const chosen = [
    block && '--use_block_optim',
    sparse && '--use_sparse_optim',
    lora && '--lora_rank > 0',
  ].filter(Boolean);
  if (chosen.length > 1) {
    throw new UsageError(
      `${chosen.join(' and ')} pick different optimizers: choose one (none of them is full Adam)`,
    );
  }
  const method: Method = block ? 'block' : sparse ? 'sparse' : lora ? 'lora' : 'full';
  const onlyFor = (flag: string, ok: boolean, what: string) => {
    if (v[flag] !== undefined && v[flag] !== false && !ok)
      throw new UsageError(
        `--${flag} applies to ${what}, but this run uses ${method === 'full' ? 'full Adam' : method}: drop it or pick that optimizer`,
      );
  };
  onlyFor('switch_every', block || sparse, '--use_block_optim or --use_sparse_optim');
  onlyFor('start_block', block, '--use_block_optim');
  onlyFor('train_last_layer', block, '--use_block_optim');
  onlyFor('update_ratio', sparse, '--use_sparse_optim');
  onlyFor('mask_mode', sparse, '--use_sparse_optim');
  const switchEvery = (v.switch_every as number | undefined) ?? 100;
  if (switchEvery !== -1 && switchEvery < 1)
    throw new UsageError(`--switch_every must be >= 1 or -1, got ${switchEvery}`);
  const updateRatio = (v.update_ratio as number | undefined) ?? 0.1;
  if (!(updateRatio > 0 && updateRatio <= 1))
    throw new UsageError(`--update_ratio must be in (0, 1], got ${updateRatio}`);
  if (v.resume_from_checkpoint !== undefined && v.overwrite_output_dir === true) {
    throw new UsageError(
      '--resume_from_checkpoint and --overwrite_output_dir contradict each other: resuming needs the output directory as it is',
    );
  }
  if (v.hf_pretrained_model_name !== undefined && v.task_name === undefined) {
    throw new UsageError(
      '--hf_pretrained_model_name needs --task_name: the embedded task is for the built-in tiny model',
    );
  }
  const task = v.task_name as SuperGlueTask | undefined;
  return {
    taskName: task,
    dataDir: v.data_dir as string | undefined,
    model: v.hf_pretrained_model_name as string | undefined,
    method,
    switchEvery,
    switchMode: v.switch_mode as RobertaOptions['switchMode'],
    startBlock: v.start_block as number | undefined,
    trainLastLayer: v.train_last_layer as boolean,
    updateRatio,
    maskMode: ((v.mask_mode as string | undefined) ?? 'adjacent') as RobertaOptions['maskMode'],
    loraRank: v.lora_rank as number,
    numTrainEpochs: v.num_train_epochs as number,
    maxSteps: v.max_steps as number | undefined,
    trainBatchSize: v.train_batch_size as number,
    evalBatchSize: v.eval_batch_size as number,
    learningRate: v.learning_rate as number,
    lrSchedulerType: v.lr_scheduler_type as RobertaOptions['lrSchedulerType'],
    warmupRatio: v.warmup_ratio as number,
    weightDecay: v.weight_decay as number,
    maxGradNorm: v.max_grad_norm as number,
    maxSeqLength: v.max_seq_length as number,
    evalEverySteps: v.eval_every_steps as number | undefined,
    loggingSteps: v.logging_steps as number,
    saveSteps: v.save_steps as number | undefined,
    resumeFromCheckpoint: v.resume_from_checkpoint as string | undefined,
    outputDir: (v.output_dir as string | undefined) ?? `output/roberta-${task ?? 'embedded'}-${method}`,
    overwriteOutputDir: v.overwrite_output_dir as boolean,
    plotLoss: v.plot_loss as boolean,
    seed: v.seed as number,
    tfjsBackend: v.tfjs_backend as RobertaOptions['tfjsBackend'],
    nativeKernels: v.native_kernels as boolean,
  };
}
