// The program loads TensorFlow.js itself: @tensorflow/tfjs registers the cpu backend and every gradient.
import '@tensorflow/tfjs';
import { join } from 'node:path';
import {
  BadamOptionError,
  BadamPartitionError,
  BadamStateError,
  flagHelp,
  parseFlags,
  parseFlagsExplicit,
  UsageError,
} from '@badam/core';
import { CHAT_FLAGS, runChat } from './chat.js';
import { runComparison } from './compare.js';
import { EMBEDDED_DEFAULTS, runEmbeddedDefault } from './embedded.js';
import { runTraining, writeJson } from './run-training.js';
import { resolveTrainOptions, TRAIN_FLAGS, type TrainOptions } from './train-options.js';

const USAGE = `Usage:
  badam-llama [train] [flags]     fine-tune (no model or dataset: the embedded default on a built-in tiny Llama)
  badam-llama compare [flags]     the embedded fine-tune with block, full, lora and sparse, side by side
  badam-llama chat --model_name_or_path <dir> [--query "..."]

Training flags:
${flagHelp(TRAIN_FLAGS)}`;

/** Parses training flags; for the embedded default, flags the command line leaves unset take embedded defaults. */
export function trainOptionsFrom(argv: readonly string[]): {
  options: TrainOptions;
  embedded: boolean;
  help: boolean;
} {
  const { values, explicit } = parseFlagsExplicit(argv, TRAIN_FLAGS);
  const embedded = values.model_name_or_path === undefined && values.dataset === undefined;
  if (embedded) {
    const blockwise =
      values.finetuning_type === undefined ||
      values.finetuning_type === 'block' ||
      values.finetuning_type === 'sparse';
    for (const [name, value] of Object.entries(EMBEDDED_DEFAULTS)) {
      if (explicit.has(name)) continue;
      if (name === 'switch_block_every' && !blockwise) continue; // a BAdam flag; full and lora reject it
      if (name === 'overwrite_output_dir' && explicit.has('resume_from_checkpoint')) continue; // resuming keeps the directory
      values[name] = value;
    }
    if (!explicit.has('output_dir'))
      values.output_dir = join('output', `embedded-${values.finetuning_type as string}`);
    if (!explicit.has('val_size')) values.val_size = 0.1; // the held-out set is passed explicitly; this enables evaluation
  }
  return { options: resolveTrainOptions(values), embedded, help: values.help === true };
}

/** Runs `badam-llama` with `argv`; resolves to the exit code. */
export async function runCommand(
  argv: readonly string[],
  io: { log(m: string): void; warn(m: string): void; write(m: string): void },
): Promise<number> {
  const [first, ...rest] = argv;
  const sub = first === 'train' || first === 'compare' || first === 'chat' ? first : undefined;
  const args = sub === undefined ? argv : rest;
  try {
    if (sub === 'chat') {
      const values = parseFlags(args, CHAT_FLAGS);
      if (values.help) {
        io.log(`Usage: badam-llama chat --model_name_or_path <dir> [flags]\n${flagHelp(CHAT_FLAGS)}`);
        return 0;
      }
      await runChat(values, io);
      return 0;
    }
    const { options, embedded, help } = trainOptionsFrom(args);
    if (help) {
      io.log(USAGE);
      return 0;
    }
    if (sub === 'compare') {
      await runComparison(
        {
          ...options,
          outputDir: args.includes('--output_dir') ? options.outputDir : join('output', 'compare'),
        },
        io,
      );
      return 0;
    }
    if (embedded) {
      await runEmbeddedDefault(options, io);
    } else {
      const run = await runTraining(options, io);
      const summary = Object.entries(run.metrics)
        .filter(([k]) =>
          /^(train_loss|eval_loss|eval_accuracy|train_runtime|train_tokens_per_second|peak_memory_bytes|estimated_memory_bytes|predict_exact_match)$/.test(
            k,
          ),
        )
        .map(([k, v]) => `${k} ${typeof v === 'number' ? Number(v.toPrecision(6)) : v}`)
        .join(', ');
      io.log(`done: ${summary}\noutputs in ${run.outputDir}`);
    }
    await writeJson(join(options.outputDir, 'badam_llama.json'), {
      template: options.template ?? (embedded ? 'default' : 'alpaca'),
      argv,
    });
    return process.exitCode === 130 ? 130 : 0;
  } catch (error) {
    const known =
      error instanceof UsageError ||
      error instanceof BadamOptionError ||
      error instanceof BadamPartitionError ||
      error instanceof BadamStateError;
    io.warn(`badam-llama: error: ${(error as Error).message}`);
    if (error instanceof UsageError) io.warn('Run badam-llama --help for the flags.');
    if (!known && process.env.BADAM_DEBUG) io.warn((error as Error).stack ?? '');
    return error instanceof UsageError || error instanceof BadamOptionError ? 2 : 1;
  }
}
