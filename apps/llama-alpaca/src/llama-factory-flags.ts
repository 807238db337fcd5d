import { type FlagSpec, type FlagValues, SWITCH_MODES, UsageError } from '@badam/core';

/**
 * LLaMA-Factory's names for BAdam's settings (its `--use_badam` family) and the badam-llama flag each one
 * sets. The names on the right are the BAdam paper's scripts' (BAdam's fork of LLaMA-Factory), which
 * badam-llama takes too.
 */
const BADAM_ALIASES = {
  badam_start_block: 'start_block',
  badam_switch_mode: 'switch_mode',
  badam_switch_interval: 'switch_block_every',
  badam_update_ratio: 'update_ratio',
  badam_mask_mode: 'mask_mode',
  evaluation_strategy: 'eval_strategy',
} as const;

/**
 * Flags of LLaMA-Factory and Hugging Face's Trainer that have no meaning for badam-llama, with why: a
 * recipe that sets them runs, and the run says once that each is ignored.
 */
const IGNORED_FLAGS: Readonly<Record<string, { type: 'boolean' | 'string'; why: string }>> = {
  overwrite_cache: { type: 'boolean', why: 'tokenized data is not cached; every run tokenizes afresh' },
  preprocessing_num_workers: { type: 'string', why: 'tokenization runs in this process' },
  dataloader_num_workers: { type: 'string', why: 'batches are built in this process' },
  report_to: { type: 'string', why: 'logs go to trainer_log.jsonl and the console' },
  ddp_find_unused_parameters: {
    type: 'boolean',
    why: "the ranks reduce-scatter every trained parameter's gradient; there is no DDP module to search",
  },
  deepspeed: {
    type: 'string',
    why: '--nproc_per_node with --backend cuda shards the model ZeRO-3 style without a DeepSpeed config',
  },
  flash_attn: { type: 'string', why: "attention runs on the backend's own kernels" },
  trust_remote_code: { type: 'boolean', why: "only badam-llama's own Llama code runs" },
  cache_dir: { type: 'string', why: 'models load from local folders only' },
  run_name: { type: 'string', why: 'logs go to --output_dir' },
  logging_dir: { type: 'string', why: 'logs go to --output_dir' },
  log_level: { type: 'string', why: "badam-llama's messages have one level" },
  disable_tqdm: { type: 'boolean', why: "the progress line is badam-llama's own" },
  do_eval: { type: 'boolean', why: 'evaluation follows --val_size and --eval_strategy' },
};

/** The flags of LLaMA-Factory's command line and YAML recipes that badam-llama takes besides its own. */
export const LLAMA_FACTORY_FLAGS: Readonly<Record<string, FlagSpec>> = {
  do_train: {
    type: 'boolean',
    default: true,
    help: 'train (badam-llama always does; false is refused)',
    aka: 'LLaMA-Factory / Hugging Face',
  },
  use_badam: {
    type: 'boolean',
    help: 'BAdam: with --badam_mode layer the same as --finetuning_type block, ratio: sparse',
    aka: 'LLaMA-Factory',
  },
  badam_mode: {
    type: 'string',
    choices: ['layer', 'ratio'],
    help: 'with --use_badam: layer (BlockOptimizer, default) or ratio (BlockOptimizerRatio)',
    aka: 'LLaMA-Factory',
  },
  badam_start_block: { type: 'integer', min: 0, help: 'the same as --start_block', aka: 'LLaMA-Factory' },
  badam_switch_mode: {
    type: 'string',
    choices: [...SWITCH_MODES],
    help: 'the same as --switch_mode',
    aka: 'LLaMA-Factory',
  },
  badam_switch_interval: {
    type: 'integer',
    help: 'the same as --switch_block_every',
    aka: 'LLaMA-Factory',
  },
  badam_update_ratio: {
    type: 'number',
    min: 0,
    exclusiveMin: true,
    max: 1,
    help: 'the same as --update_ratio',
    aka: 'LLaMA-Factory',
  },
  badam_mask_mode: {
    type: 'string',
    choices: ['adjacent', 'scatter'],
    help: 'the same as --mask_mode',
    aka: 'LLaMA-Factory',
  },
  eval_strategy: {
    type: 'string',
    choices: ['no', 'steps', 'epoch'],
    help: 'when to evaluate: never, every --eval_steps (default --logging_steps), every epoch (needs --val_size)',
    aka: 'Hugging Face',
  },
  evaluation_strategy: {
    type: 'string',
    choices: ['no', 'steps', 'epoch'],
    help: 'the same as --eval_strategy',
    aka: "Hugging Face's older name",
  },
  max_samples: {
    type: 'integer',
    min: 1,
    help: 'use at most this many examples of each dataset (before --val_size is split off)',
    aka: 'LLaMA-Factory',
  },
  ...Object.fromEntries(
    Object.entries(IGNORED_FLAGS).map(([name, { type, why }]) => [
      name,
      { type, help: `ignored: ${why}`, aka: 'LLaMA-Factory / Hugging Face' } satisfies FlagSpec,
    ]),
  ),
};

/**
 * Rewrites LLaMA-Factory's spellings into badam-llama's flags, in place: `--use_badam` with `--badam_mode
 * layer|ratio` becomes `--finetuning_type block|sparse`, each `--badam_*` setting the flag it names
 * (`--badam_switch_interval` is `--switch_block_every`), `--evaluation_strategy` is `--eval_strategy`.
 * Returns one line per ignored flag the command line set. A setting given twice with different values, or
 * `--use_badam` with a method that is not BAdam's, is a `UsageError` naming both flags.
 */
export function normalizeLlamaFactoryFlags(values: FlagValues, explicit: Set<string>): string[] {
  for (const [alias, flag] of Object.entries(BADAM_ALIASES)) {
    if (!explicit.has(alias)) continue;
    if (explicit.has(flag) && values[flag] !== values[alias]) {
      throw new UsageError(
        `--${alias} ${values[alias]} and --${flag} ${values[flag]} set the same thing to different values: give one of them`,
      );
    }
    values[flag] = values[alias];
    explicit.add(flag);
  }
  const mode = values.badam_mode as 'layer' | 'ratio' | undefined;
  if (values.use_badam === true) {
    const method = mode === 'ratio' ? 'sparse' : 'block';
    const given = values.finetuning_type as string;
    // LLaMA-Factory pairs --use_badam with --finetuning_type full; BAdam's own scripts say block.
    if (explicit.has('finetuning_type') && given !== 'full' && given !== method) {
      throw new UsageError(
        `--use_badam${mode !== undefined ? ` --badam_mode ${mode}` : ''} trains with --finetuning_type ${method}, but --finetuning_type ${given} was given: drop one (LLaMA-Factory pairs --use_badam with --finetuning_type full)`,
      );
    }
    values.finetuning_type = method;
    explicit.add('finetuning_type');
  } else if (mode !== undefined) {
    throw new UsageError(
      `--badam_mode ${mode} takes effect with --use_badam, which this run ${explicit.has('use_badam') ? 'sets to false' : 'does not set'}: add --use_badam true or drop --badam_mode`,
    );
  }
  if (values.do_train === false) {
    throw new UsageError(
      'badam-llama always trains: --do_train false (prediction only) has no run to make; drop it (--do_predict adds predictions to a training run)',
    );
  }
  return Object.keys(IGNORED_FLAGS)
    .filter((flag) => explicit.has(flag))
    .map((flag) => `--${flag} is ignored: ${IGNORED_FLAGS[flag]!.why}`);
}
