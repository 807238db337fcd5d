// The program loads TensorFlow.js itself: @tensorflow/tfjs registers the cpu backend and every gradient.
import '@tensorflow/tfjs';
import {
  BadamOptionError,
  BadamPartitionError,
  BadamStateError,
  flagHelp,
  parseFlagsExplicit,
  UsageError,
} from '@badam/core';
import { ROBERTA_FLAGS, type RobertaOptions, resolveRobertaOptions } from './options.js';
import { runSuperGlue } from './run-superglue.js';

const USAGE = `Usage:
  badam-roberta [flags]    fine-tune an encoder on a SuperGLUE task
                           (no --task_name: the embedded default, a built-in tiny RoBERTa on a generated pair task)

Flags:
${flagHelp(ROBERTA_FLAGS)}`;

/** Hyperparameters of the embedded default where the command line does not set them. */
export const EMBEDDED_DEFAULTS: Readonly<Record<string, string | number | boolean>> = {
  use_block_optim: true,
  train_last_layer: true,
  switch_every: 25,
  switch_mode: 'ascending',
  learning_rate: 3e-3,
  train_batch_size: 32,
  max_steps: 600,
  warmup_ratio: 0.05,
  weight_decay: 0.01,
  max_seq_length: 64,
  eval_every_steps: 100,
  logging_steps: 20,
  overwrite_output_dir: true,
};

/** Parses flags; without --task_name, flags the command line leaves unset take the embedded defaults. */
export function robertaOptionsFrom(argv: readonly string[]): {
  options: RobertaOptions;
  embedded: boolean;
  help: boolean;
} {
  const { values, explicit } = parseFlagsExplicit(argv, ROBERTA_FLAGS);
  const embedded = values.task_name === undefined && values.hf_pretrained_model_name === undefined;
  if (embedded) {
    // BAdam unless the command line picked a method (--use_sparse_optim, --lora_rank, --use_block_optim false).
    const methodChosen =
      values.use_sparse_optim === true || (values.lora_rank as number) > 0 || explicit.has('use_block_optim');
    for (const [name, value] of Object.entries(EMBEDDED_DEFAULTS)) {
      if (explicit.has(name)) continue;
      if ((name === 'use_block_optim' || name === 'train_last_layer') && methodChosen) continue;
      if (name === 'overwrite_output_dir' && explicit.has('resume_from_checkpoint')) continue; // resuming keeps the directory
      values[name] = value;
    }
    // --switch_every is a BAdam / ratio flag: full Adam and LoRA reject it.
    if (!explicit.has('switch_every') && values.use_block_optim !== true && values.use_sparse_optim !== true)
      delete values.switch_every;
  }
  return { options: resolveRobertaOptions(values), embedded, help: values.help === true };
}

/** Runs `badam-roberta` with `argv`; resolves to the exit code. */
export async function runRobertaCommand(
  argv: readonly string[],
  io: { log(m: string): void; warn(m: string): void },
): Promise<number> {
  try {
    const { options, help } = robertaOptionsFrom(argv);
    if (help) {
      io.log(USAGE);
      return 0;
    }
    await runSuperGlue(options, io);
    return process.exitCode === 130 ? 130 : 0;
  } catch (error) {
    io.warn(`badam-roberta: error: ${(error as Error).message}`);
    if (error instanceof UsageError) io.warn('Run badam-roberta --help for the flags.');
    const known =
      error instanceof UsageError ||
      error instanceof BadamOptionError ||
      error instanceof BadamPartitionError ||
      error instanceof BadamStateError;
    if (!known && process.env.BADAM_DEBUG) io.warn((error as Error).stack ?? '');
    return error instanceof UsageError || error instanceof BadamOptionError ? 2 : 1;
  }
}
