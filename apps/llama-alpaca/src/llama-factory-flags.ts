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
  pure_bf16: 'bf16',
} as const;

/** BAdam settings LLaMA-Factory reads in one mode only, and the mode in which it ignores them (so do we). */
const MODE_ONLY: Readonly<Record<string, { ignoredIn: 'layer' | 'ratio'; why: string }>> = {
  badam_update_ratio: {
    ignoredIn: 'layer',
    why: '--badam_mode layer updates whole blocks (it is for ratio)',
  },
  badam_mask_mode: { ignoredIn: 'layer', why: '--badam_mode layer updates whole blocks (it is for ratio)' },
  badam_start_block: {
    ignoredIn: 'ratio',
    why: '--badam_mode ratio updates every layer at every step (it is for layer)',
  },
};

/**
 * Flags of LLaMA-Factory and Hugging Face's Trainer that have no meaning for badam-llama, with why: a
 * recipe that sets them runs, and the run says once that each is ignored.
 */
const IGNORED_FLAGS: Readonly<Record<string, { type: 'boolean' | 'string'; why: string }>> = {
  overwrite_cache: { type: 'boolean', why: 'tokenized data is not cached; every run tokenizes afresh' },
  preprocessing_num_workers: { type: 'string', why: 'tokenization runs in this process' },
  dataloader_num_workers: { type: 'string', why: 'batches are built in this process' },
  ddp_find_unused_parameters: {
    type: 'boolean',
    why: "the ranks reduce-scatter every trained parameter's gradient; there is no DDP module to search",
  },
  deepspeed: {
    type: 'string',
    why: '--nproc_per_node with --backend cuda or cpu shards the model ZeRO-3 style without a DeepSpeed config',
  },
  flash_attn: { type: 'string', why: "attention runs on the backend's own kernels" },
  trust_remote_code: { type: 'boolean', why: "only badam-llama's own Llama code runs" },
  cache_dir: { type: 'string', why: 'models load from local folders only' },
  run_name: { type: 'string', why: 'logs go to --output_dir' },
  log_level: { type: 'string', why: "badam-llama's messages have one level" },
  disable_tqdm: { type: 'boolean', why: "the progress line is badam-llama's own" },
  optim: {
    type: 'string',
    why: "the base optimizer is always AdamW (torch.optim.AdamW's update, what adamw_torch names; BAdam wraps it block by block)",
  },
  predict_with_generate: {
    type: 'boolean',
    why: '--do_predict always generates (greedy unless --temperature), into generated_predictions.jsonl',
  },
  infer_backend: { type: 'string', why: "generation runs on badam-llama's own tfjs Llama" },
  export_device: { type: 'string', why: 'export merges on the CPU' },
  export_legacy_format: {
    type: 'boolean',
    why: 'export writes safetensors (the non-legacy format) only',
  },
};

/** The flags of LLaMA-Factory's command line and YAML recipes that badam-llama takes besides its own. */
export const LLAMA_FACTORY_FLAGS: Readonly<Record<string, FlagSpec>> = {
  do_train: {
    type: 'boolean',
    help: 'train (default, unless --do_eval / --do_predict is given without training data); false with --do_eval or --do_predict evaluates or predicts with the model as it is',
    aka: 'LLaMA-Factory / Hugging Face',
  },
  do_eval: {
    type: 'boolean',
    default: false,
    help: 'with --do_train false: evaluate the model on the validation set (--eval_dataset, or --val_size of --dataset) into eval_results.json',
    aka: 'LLaMA-Factory / Hugging Face',
  },
  eval_dataset: {
    type: 'string',
    help: 'evaluation / prediction dataset(s), like --dataset (instead of --val_size)',
    aka: 'LLaMA-Factory',
  },
  pure_bf16: {
    type: 'boolean',
    help: 'the same as --bf16 (bf16 weights; cuda keeps fp32 masters and Adam state for the active block)',
    aka: 'LLaMA-Factory',
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
  const notes: string[] = [];
  const mode = values.badam_mode as 'layer' | 'ratio' | undefined;
  if (values.use_badam === true) {
    for (const [flag, { ignoredIn, why }] of Object.entries(MODE_ONLY)) {
      if (!explicit.has(flag) || (mode ?? 'layer') !== ignoredIn) continue;
      explicit.delete(flag);
      values[flag] = undefined;
      notes.push(`--${flag} is ignored: ${why}`);
    }
  }
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
  // Hugging Face's do_train is off unless given; badam-llama trains by default, except where the command line
  // asks a model of its own for evaluation or prediction and gives no training data (LLaMA-Factory's predict
  // recipes). The embedded default always trains.
  if (values.do_train === undefined)
    values.do_train = !(
      (values.do_eval === true || values.do_predict === true) &&
      values.dataset === undefined &&
      values.model_name_or_path !== undefined
    );
  if (values.do_train === false && values.do_eval !== true && values.do_predict !== true) {
    throw new UsageError(
      '--do_train false leaves nothing to do: add --do_eval (eval_results.json) or --do_predict (generated_predictions.jsonl), or drop it to train',
    );
  }
  // The device backends (cuda, cpu, and auto's pick when it is one) train fp16 weights; tfjs has no fp16.
  if (values.fp16 === true && values.backend === 'tfjs')
    notes.push(
      '--fp16 is ignored on tfjs: TensorFlow.js has no 16-bit float, so training and the saved model stay fp32 (--backend cuda or cpu trains fp16 weights)',
    );
  return [
    ...notes,
    ...Object.keys(IGNORED_FLAGS)
      .filter((flag) => explicit.has(flag))
      .map((flag) =>
        flag === 'optim' && !/^adamw/i.test(String(values.optim))
          ? `--optim ${values.optim} is ignored: not AdamW, but badam-llama trains with AdamW whatever --optim says (BAdam wraps it block by block)`
          : `--${flag} is ignored: ${IGNORED_FLAGS[flag]!.why}`,
      ),
  ];
}
