import { type FlagSpec, type FlagValues, UsageError } from '@badam/core';
import { SUPERGLUE_TASKS, type SuperGlueTask } from '@badam/data';
import type { FineTuningMethod, RunnerDialect, RunOptions } from '@badam/runner';
import { resolveRunOptions, runnerFlags } from '@badam/runner';

/** The flag that picks each method on badam-roberta's command line (full Adam is none of them). */
const METHOD_CHOICE: Readonly<Record<FineTuningMethod, string>> = {
  block: '--use_block_optim',
  sparse: '--use_sparse_optim',
  lora: '--lora_rank > 0',
  full: 'full Adam',
};

/** How badam-roberta's command line names things: the BAdam paper's RoBERTa scripts. */
export const ROBERTA_DIALECT: RunnerDialect = {
  name: 'badam-roberta',
  rename: {
    switch_block_every: 'switch_every',
    per_device_train_batch_size: 'train_batch_size',
    per_device_eval_batch_size: 'eval_batch_size',
    eval_steps: 'eval_every_steps',
  },
  describeMethods: (methods) => methods.map((m) => METHOD_CHOICE[m]).join(' or '),
  methodFlags: { train_last_layer: ['block'] },
};

/** The flags of `badam-roberta`, named as in the BAdam paper's RoBERTa scripts. */
export const ROBERTA_FLAGS: Readonly<Record<string, FlagSpec>> = {
  task_name: {
    type: 'string',
    choices: [...SUPERGLUE_TASKS],
    help: 'SuperGLUE task (default: the embedded generated task)',
    aka: "Hugging Face run_glue.py's name",
  },
  data_dir: {
    type: 'string',
    help: 'folder with <task>/train.jsonl and val.jsonl (default: ../shared/data/superglue)',
    aka: 'LLaMA-Factory --dataset_dir',
  },
  hf_pretrained_model_name: {
    type: 'string',
    help: 'local Hugging Face RoBERTa / BERT directory (default: a built-in tiny RoBERTa)',
    aka: 'LLaMA-Factory --model_name_or_path',
  },
  use_block_optim: {
    type: 'boolean',
    default: false,
    help: 'BAdam: blocks are the encoder layers and the task head',
    aka: 'LLaMA-Factory --use_badam, badam-llama --finetuning_type block',
  },
  use_sparse_optim: {
    type: 'boolean',
    default: false,
    help: 'BlockOptimizerRatio (--update_ratio of each matrix)',
    aka: 'LLaMA-Factory --use_badam --badam_mode ratio, badam-llama --finetuning_type sparse',
  },
  lora_rank: {
    type: 'integer',
    min: 0,
    default: 0,
    help: 'LoRA rank on query and value; 0 is no LoRA',
    aka: 'LLaMA-Factory --finetuning_type lora --lora_rank',
  },
  train_last_layer: {
    type: 'boolean',
    default: false,
    help: 'BAdam: the task head (and pooler) trains in every block',
    aka: "the BAdam paper's RoBERTa script",
  },
  max_seq_length: {
    type: 'integer',
    min: 8,
    default: 256,
    help: 'most tokens per row (pairs are truncated longest-first)',
    aka: 'LLaMA-Factory --cutoff_len',
  },
  ...runnerFlags({
    rename: ROBERTA_DIALECT.rename,
    // RoBERTa trains in one process: no ranks to start, no rank to wait for.
    omit: ['nproc_per_node', 'ddp_timeout'],
    defaults: {
      switch_mode: 'random',
      per_device_train_batch_size: 16,
      per_device_eval_batch_size: 32,
      warmup_ratio: 0.06,
      weight_decay: 0.1,
      num_train_epochs: 10,
      plot_loss: true,
    },
    help: {
      switch_block_every: 'BAdam / ratio: optimizer steps per block (default 100; -1 never switches)',
      per_device_train_batch_size: 'examples per step',
      per_device_eval_batch_size: 'examples per evaluation batch',
      eval_steps: 'evaluate on the validation set every N steps',
      output_dir:
        'where logs, plots, predictions, checkpoints and the model go (default: output/roberta-<task>-<method>)',
      seed: 'seed of data order, head initialisation, dropout and block order',
    },
  }),
};

/** Validated options of a run: the runner kit's shared ones and badam-roberta's own. */
export interface RobertaOptions extends RunOptions {
  taskName: SuperGlueTask | undefined;
  dataDir: string | undefined;
  model: string | undefined;
  trainLastLayer: boolean;
  maxSeqLength: number;
}

/** The method the command line picks: at most one of the three flags; none is full Adam. */
export function methodOf(v: FlagValues): FineTuningMethod {
  const picked = (['block', 'sparse', 'lora'] as const).filter((m) =>
    m === 'lora'
      ? (v.lora_rank as number) > 0
      : v[m === 'block' ? 'use_block_optim' : 'use_sparse_optim'] === true,
  );
  if (picked.length > 1) {
    throw new UsageError(
      `${picked.map((m) => METHOD_CHOICE[m]).join(' and ')} pick different optimizers: choose one (none of them is full Adam)`,
    );
  }
  return picked[0] ?? 'full';
}

/** Turns parsed flags into options, rejecting combinations that cannot mean anything with a message that says what to do. */
export function resolveRobertaOptions(v: FlagValues): RobertaOptions {
  const method = methodOf(v);
  if (v.hf_pretrained_model_name !== undefined && v.task_name === undefined) {
    throw new UsageError(
      '--hf_pretrained_model_name needs --task_name: the embedded task is for the built-in tiny model',
    );
  }
  const task = v.task_name as SuperGlueTask | undefined;
  const shared = resolveRunOptions(v, method, ROBERTA_DIALECT, {
    outputDir: `output/roberta-${task ?? 'embedded'}-${method}`,
    loraRank: v.lora_rank as number,
  });
  return {
    ...shared,
    taskName: task,
    dataDir: v.data_dir as string | undefined,
    model: v.hf_pretrained_model_name as string | undefined,
    trainLastLayer: v.train_last_layer as boolean,
    maxSeqLength: v.max_seq_length as number,
  };
}
