// The program loads TensorFlow.js itself: @tensorflow/tfjs registers the cpu backend and every gradient.
import '@tensorflow/tfjs';
import { join } from 'node:path';
import type { RunIO } from '@badam/callbacks';
import { flagHelp } from '@badam/core';
import {
  COMPARISON_FLAGS,
  type ComparisonCommandRun,
  comparisonCommand,
  packageVersion,
  parseRunnerCommand,
  type RunnerCommandSpec,
  runCli,
  runComparisonCommand,
} from '@badam/runner';
import { runRobertaComparison } from './compare.js';
import {
  methodOf,
  ROBERTA_DIALECT,
  ROBERTA_FLAGS,
  type RobertaOptions,
  resolveRobertaOptions,
} from './options.js';
import { runSuperGlue } from './run-superglue.js';

const USAGE = `Usage:
  badam-roberta [flags]          fine-tune an encoder on a SuperGLUE task
                                 (no --task_name: the embedded default, a built-in tiny RoBERTa on a generated pair task)
  badam-roberta compare [flags]  the embedded task with block, full, lora and sparse on several seeds, side by side

Flags (the BAdam paper's RoBERTa script's names; "as" gives the name in LLaMA-Factory / badam-llama):
${flagHelp(ROBERTA_FLAGS)}

compare's own flags:
${flagHelp(COMPARISON_FLAGS)}`;

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
};

/** badam-roberta's command line for the runner kit: without a task or model, the embedded default runs. */
const ROBERTA_COMMAND: RunnerCommandSpec<RobertaOptions> = {
  flags: ROBERTA_FLAGS,
  dialect: ROBERTA_DIALECT,
  isEmbedded: (values) => values.task_name === undefined && values.hf_pretrained_model_name === undefined,
  embeddedDefaults(values, explicit) {
    // BAdam with the head in every block, unless the command line picked a method.
    if (methodOf(values) === 'full' && !explicit.has('use_block_optim')) return EMBEDDED_DEFAULTS;
    const { use_block_optim: _block, train_last_layer: _head, ...rest } = EMBEDDED_DEFAULTS;
    return rest;
  },
  methodOf,
  resolve: resolveRobertaOptions,
};

/** `badam-roberta compare`: the flags of a run, plus the seeds and the learning rates to choose from. */
const COMPARE_RUN: ComparisonCommandRun<RobertaOptions> = {
  command: comparisonCommand(ROBERTA_COMMAND),
  usage: USAGE,
  defaultOutputDir: join('output', 'roberta-compare'),
  compare: runRobertaComparison,
};

/** Parses flags; without --task_name, flags the command line leaves unset take the embedded defaults. */
export function robertaOptionsFrom(
  argv: readonly string[],
): ReturnType<typeof parseRunnerCommand<RobertaOptions>> {
  return parseRunnerCommand(argv, ROBERTA_COMMAND);
}

/** Runs `badam-roberta` with `argv`; resolves to the exit code. */
export async function runRobertaCommand(argv: readonly string[], io: RunIO): Promise<number> {
  if (argv.includes('--version') || argv.includes('-V')) {
    io.log(`badam-roberta ${packageVersion(import.meta.url)}`);
    return 0;
  }
  return runCli(ROBERTA_DIALECT.name, io, async () => {
    if (argv[0] === 'compare') return runComparisonCommand(argv.slice(1), COMPARE_RUN, io);
    const { options, help } = robertaOptionsFrom(argv);
    if (help) {
      io.log(USAGE);
      return 0;
    }
    await runSuperGlue(options, io);
    return 0;
  });
}
