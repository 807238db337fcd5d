import { type FlagSpec, LR_SCHEDULE_TYPES, SWITCH_MODES, TRAINING_DEFAULTS } from '@badam/core';
import { TFJS_BACKEND_FLAGS } from '@badam/tfjs';

/**
 * The tensor backends a runner can train on, and `auto`: the fastest one that trains the run (see
 * `resolveAutoBackend`).
 */
export const RUN_BACKENDS = ['auto', 'tfjs', 'cuda', 'cpu'] as const;

/** A tensor backend a runner can train on, or `auto`. */
export type RunBackendName = (typeof RUN_BACKENDS)[number];

/** A backend that trains on @badam/cuda's devices: a GPU (`cuda`) or the CPU engine (`cpu`). */
export function isDeviceBackend(backend: RunBackendName): backend is 'cuda' | 'cpu' {
  return backend === 'cuda' || backend === 'cpu';
}

/**
 * The flags every BAdam runner shares, by their canonical (LLaMA-Factory / Hugging Face) names. A runner
 * takes them through {@link runnerFlags}, renaming the ones its paper's scripts spell differently
 * (`switch_every` for `switch_block_every` in the RoBERTa scripts) and setting its own defaults.
 */
export const RUN_FLAGS = {
  switch_block_every: {
    type: 'integer',
    help: 'BAdam / sparse: optimizer steps per block (sparse: per mask window); -1 never switches',
    aka: 'LLaMA-Factory --badam_switch_interval',
  },
  switch_mode: {
    type: 'string',
    choices: [...SWITCH_MODES],
    default: TRAINING_DEFAULTS.switchMode,
    help: 'BAdam: block order',
    aka: 'LLaMA-Factory --badam_switch_mode',
  },
  start_block: {
    type: 'integer',
    min: 0,
    help: 'BAdam: first block',
    aka: 'LLaMA-Factory --badam_start_block',
  },
  update_ratio: {
    type: 'number',
    min: 0,
    exclusiveMin: true,
    max: 1,
    help: `sparse: fraction of each parameter updated (default ${TRAINING_DEFAULTS.ratio.updateRatio})`,
    aka: 'LLaMA-Factory --badam_update_ratio',
  },
  mask_mode: {
    type: 'string',
    choices: ['adjacent', 'scatter'],
    help: `sparse: mask layout (default ${TRAINING_DEFAULTS.ratio.maskMode})`,
    aka: 'LLaMA-Factory --badam_mask_mode',
  },
  per_device_train_batch_size: { type: 'integer', min: 1, default: 4, help: 'micro-batch size' },
  per_device_eval_batch_size: { type: 'integer', min: 1, default: 4, help: 'evaluation batch size' },
  gradient_accumulation_steps: {
    type: 'integer',
    min: 1,
    default: TRAINING_DEFAULTS.gradientAccumulationSteps,
    help: 'micro-batches per optimizer step',
  },
  learning_rate: { type: 'number', min: 0, default: 1e-5, help: 'peak learning rate' },
  lr_scheduler_type: {
    type: 'string',
    choices: [...LR_SCHEDULE_TYPES],
    default: 'linear',
    help: 'learning-rate schedule',
  },
  warmup_ratio: { type: 'number', min: 0, max: 1, default: 0, help: 'warmup as a fraction of the steps' },
  warmup_steps: { type: 'integer', min: 0, help: 'warmup steps (overrides warmup_ratio)' },
  weight_decay: {
    type: 'number',
    min: 0,
    default: TRAINING_DEFAULTS.adamw.weightDecay,
    help: 'AdamW decoupled weight decay (not on biases and norms)',
  },
  adam_beta1: {
    type: 'number',
    min: 0,
    max: 1,
    default: TRAINING_DEFAULTS.adamw.betas[0],
    help: "Adam's beta1 (< 1)",
  },
  adam_beta2: {
    type: 'number',
    min: 0,
    max: 1,
    default: TRAINING_DEFAULTS.adamw.betas[1],
    help: "Adam's beta2 (< 1)",
  },
  adam_epsilon: {
    type: 'number',
    min: 0,
    exclusiveMin: true,
    default: TRAINING_DEFAULTS.adamw.epsilon,
    help: "Adam's epsilon, added to the denominator",
  },
  // Hugging Face's default, not core's (no clipping): the runners follow LLaMA-Factory's scripts.
  max_grad_norm: { type: 'number', min: 0, default: 1, help: 'global-norm clipping, 0 disables' },
  num_train_epochs: {
    type: 'number',
    min: 0,
    exclusiveMin: true,
    default: 3,
    help: 'passes over the training data',
  },
  max_steps: { type: 'integer', min: 1, help: 'optimizer steps (overrides num_train_epochs)' },
  eval_steps: { type: 'integer', min: 1, help: 'evaluate every N steps' },
  logging_steps: {
    type: 'integer',
    min: 1,
    help: 'log every N steps (default 10, fewer on a short run so that the loss curve has about 50 points)',
  },
  save_strategy: {
    type: 'string',
    choices: ['no', 'steps', 'epoch'],
    default: 'steps',
    help: 'when to save checkpoints: never, every --save_steps (and at the last step, as Hugging Face does), or at the end of each epoch',
    aka: 'Hugging Face',
  },
  save_steps: { type: 'integer', min: 1, help: 'checkpoint every N steps (unset: no checkpoints)' },
  save_total_limit: {
    type: 'integer',
    min: 1,
    help: "checkpoints kept, the newest (and --load_best_model_at_end's best); unset: all, as Hugging Face's default",
  },
  save_only_model: {
    type: 'boolean',
    default: false,
    help: 'checkpoints hold the model only, no optimizer or BAdam state: smaller, but a run cannot resume from them',
    aka: 'Hugging Face',
  },
  load_best_model_at_end: {
    type: 'boolean',
    default: false,
    help: 'at the end, load the checkpoint with the best --metric_for_best_model (needs evaluation at each checkpoint) and save that as the model',
    aka: 'Hugging Face',
  },
  metric_for_best_model: {
    type: 'string',
    help: 'the evaluation metric --load_best_model_at_end compares: loss (default), accuracy, or another eval_ metric',
    aka: 'Hugging Face',
  },
  greater_is_better: {
    type: 'boolean',
    help: 'a larger --metric_for_best_model is better (default: false for a loss, true otherwise)',
    aka: 'Hugging Face',
  },
  data_seed: {
    type: 'integer',
    min: 0,
    help: 'seed of the training data order only (default --seed)',
    aka: 'Hugging Face',
  },
  report_to: {
    type: 'string',
    default: 'none',
    help: 'where metrics go besides trainer_log.jsonl: none, or tensorboard (event files in --logging_dir); others are ignored, with a note',
    aka: 'Hugging Face',
  },
  logging_dir: {
    type: 'string',
    help: 'where --report_to tensorboard writes its event files (default <output_dir>/runs/<date>_<host>)',
    aka: 'Hugging Face',
  },
  output_dir: { type: 'string', help: 'where checkpoints, logs, plots and the model go' },
  overwrite_output_dir: { type: 'boolean', default: false, help: 'reuse a non-empty output directory' },
  resume_from_checkpoint: {
    type: 'string',
    help: 'a checkpoint directory, true for the latest in output_dir, or false for none',
  },
  force_resume: {
    type: 'boolean',
    default: false,
    help: "resume even where settings differ from the checkpoint's (learning rate, method, steps...)",
  },
  plot_loss: { type: 'boolean', default: false, help: 'write training_loss.png' },
  seed: {
    type: 'integer',
    min: 0,
    default: TRAINING_DEFAULTS.seed,
    help: "seed of data order, initialisation and BAdam's random order",
  },
  backend: {
    type: 'string',
    choices: [...RUN_BACKENDS],
    default: 'tfjs',
    help: "tensor backend: cuda (@badam/cuda on an NVIDIA GPU), cpu (@badam/cuda's CPU engine), tfjs (TensorFlow.js: every method); auto: a GPU if one is found, else the CPU engine, for models and methods they train, else tfjs",
  },
  cuda_device: {
    type: 'string',
    help: "--backend cuda: the GPU ordinal (default 0), or cpu for the CPU reference device (the kernels' C++ references, slow: tests and small models)",
  },
  ...TFJS_BACKEND_FLAGS,
  board: {
    type: 'boolean',
    default: false,
    help: 'watch the run live: serve badam-board on 127.0.0.1 beside it and print its URL',
  },
  nproc_per_node: {
    type: 'integer',
    min: 1,
    default: 1,
    help: "--backend cuda|cpu: processes on this machine, one rank each, the model sharded ZeRO-3 style over them (torchrun's flag; RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT join several machines)",
    aka: 'torchrun --nproc_per_node',
  },
  ddp_timeout: {
    type: 'integer',
    min: 1,
    default: 1800,
    help: 'seconds a rank waits for the others before the run stops with an error naming the rank that failed',
  },
  help: { type: 'boolean', default: false, help: 'show this help' },
} as const satisfies Readonly<Record<string, FlagSpec>>;

/** A canonical shared flag name. */
export type RunFlagName = keyof typeof RUN_FLAGS;

/** How a runner spells and sets up the shared flags. */
export interface RunnerFlagOptions {
  /** The runner's name for a shared flag where its scripts differ (e.g. `switch_block_every: 'switch_every'`). */
  readonly rename?: Partial<Record<RunFlagName, string>>;
  /** Defaults that differ from the shared ones. */
  readonly defaults?: Partial<Record<RunFlagName, string | number | boolean>>;
  /** Help texts that say more for this runner. */
  readonly help?: Partial<Record<RunFlagName, string>>;
  /** Shared flags this runner does not have. */
  readonly omit?: readonly RunFlagName[];
}

/**
 * The shared flags as one runner spells them, with its defaults: the flag table to merge with the
 * runner's own flags and parse with core's `parseFlags`. A renamed flag's `aka` (shown in `--help`) names
 * the flag as LLaMA-Factory and badam-llama spell it.
 *
 * @example
 * ```ts
 * const FLAGS = { ...runnerFlags({ rename: { switch_block_every: 'switch_every' }, defaults: { weight_decay: 0.1 } }),
 *   task_name: { type: 'string', help: 'SuperGLUE task' } };
 * ```
 */
export function runnerFlags(options: RunnerFlagOptions = {}): Record<string, FlagSpec> {
  const out: Record<string, FlagSpec> = {};
  for (const [name, spec] of Object.entries(RUN_FLAGS) as Array<[RunFlagName, FlagSpec]>) {
    if (options.omit?.includes(name)) continue;
    const defaultValue = options.defaults?.[name];
    const help = options.help?.[name];
    const renamed = options.rename?.[name];
    // A renamed flag says what LLaMA-Factory and badam-llama call it, so that users of either find it.
    const aka =
      renamed === undefined
        ? spec.aka
        : spec.aka !== undefined
          ? `${spec.aka}, badam-llama --${name}`
          : `LLaMA-Factory --${name}`;
    out[renamed ?? name] = {
      ...spec,
      ...(defaultValue !== undefined ? { default: defaultValue } : {}),
      ...(help !== undefined ? { help } : {}),
      ...(aka !== undefined ? { aka } : {}),
    };
  }
  return out;
}
