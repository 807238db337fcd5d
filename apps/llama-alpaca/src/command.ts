// The program loads TensorFlow.js itself: @tensorflow/tfjs registers the cpu backend and every gradient.
import '@tensorflow/tfjs';
import { join } from 'node:path';
import type { RunIO } from '@badam/callbacks';
import { flagHelp, parseFlags } from '@badam/core';
import {
  COMPARISON_FLAGS,
  type ComparisonCommandRun,
  comparisonCommand,
  type FineTuningMethod,
  packageVersion,
  parseRunnerCommand,
  type RunnerCommandSpec,
  runCli,
  runComparisonCommand,
} from '@badam/runner';
import { CHAT_FLAGS, recordedTemplate, runChat } from './chat.js';
import { runComparison } from './compare.js';
import { EMBEDDED_DEFAULTS, runEmbeddedDefault } from './embedded.js';
import { PRETRAIN_FLAGS, pretrainSettingsFrom, runPretraining } from './embedded-pretrained.js';
import { EXPORT_FLAGS, runExport } from './export-model.js';
import { normalizeLlamaFactoryFlags } from './llama-factory-flags.js';
import { isRecipePath, recipeArgs } from './recipe-file.js';
import { runTraining, writeJson } from './run-training.js';
import { LLAMA_DIALECT, resolveTrainOptions, TRAIN_FLAGS, type TrainOptions } from './train-options.js';

const USAGE = `Usage:
  badam-llama [train] [flags]     fine-tune (no model or dataset: the embedded default on a built-in tiny Llama)
  badam-llama train recipe.yaml [flags]
                                  fine-tune as a LLaMA-Factory YAML (or JSON) recipe says; flags override it
  badam-llama compare [flags]     the embedded fine-tune with block, full, lora and sparse on --seeds seeds,
                                  side by side (--learning_rates: each rate chosen on a validation split)
  badam-llama chat --model_name_or_path <dir> [--adapter_name_or_path <dir>] [--query "..."]
                                  talk to a model (lines piped in are answered one by one)
  badam-llama export --model_name_or_path <base> --adapter_name_or_path <dir> --export_dir <dir>
                                  merge LoRA adapters into the base: a plain Hugging Face model folder
  badam-llama --version           the version
  badam-llama pretrain [flags]    pretrain the built-in tiny Llama on generated text (the shipped start:
                                  --output_dir packages/embedded/assets/embedded-pretrained)

Training flags (LLaMA-Factory's names; "as" gives where a name comes from, or its name elsewhere):
${flagHelp(TRAIN_FLAGS)}

compare's own flags:
${flagHelp(COMPARISON_FLAGS)}`;

/** badam-llama's command line for the runner kit: without a model or dataset, the embedded default runs. */
const LLAMA_COMMAND: RunnerCommandSpec<TrainOptions> = {
  flags: TRAIN_FLAGS,
  dialect: LLAMA_DIALECT,
  isEmbedded: (values) =>
    values.model_name_or_path === undefined &&
    values.dataset === undefined &&
    values.eval_dataset === undefined,
  embeddedDefaults: (values) => ({
    ...EMBEDDED_DEFAULTS,
    output_dir: join('output', `embedded-${values.finetuning_type as string}`),
    val_size: 0.1, // the held-out set is passed explicitly; this enables evaluation
  }),
  methodOf: (values) => values.finetuning_type as FineTuningMethod,
  resolve: resolveTrainOptions,
  normalize: normalizeLlamaFactoryFlags,
};

/** `badam-llama compare`: the training flags, plus the seeds and the learning rates to choose from. */
const COMPARE_RUN: ComparisonCommandRun<TrainOptions> = {
  command: comparisonCommand(LLAMA_COMMAND),
  usage: USAGE,
  defaultOutputDir: join('output', 'compare'),
  compare: (options, plan, io) => runComparison(options, plan, io),
};

/**
 * Parses training flags (LLaMA-Factory's spellings included); for the embedded default, flags the command
 * line leaves unset take embedded defaults. `notes` are lines to show: flags accepted but ignored.
 */
export function trainOptionsFrom(argv: readonly string[]): {
  options: TrainOptions;
  embedded: boolean;
  help: boolean;
  notes: string[];
} {
  return parseRunnerCommand(argv, LLAMA_COMMAND);
}

const SUBCOMMANDS = ['train', 'compare', 'chat', 'pretrain', 'export'] as const;

/** Runs `badam-llama` with `argv`; resolves to the exit code. */
export async function runCommand(
  argv: readonly string[],
  io: RunIO,
  input?: NodeJS.ReadableStream & { isTTY?: boolean },
): Promise<number> {
  const [first, ...rest] = argv;
  const sub = SUBCOMMANDS.find((name) => name === first);
  const given = sub === undefined ? argv : rest;
  if (given.includes('--version') || given.includes('-V')) {
    io.log(`badam-llama ${packageVersion(import.meta.url)}`);
    return 0;
  }
  return runCli(LLAMA_DIALECT.name, io, async () => {
    // `train recipe.yaml --flag value`: the recipe's keys come first, so the command line's flags win.
    const recipeFlags = sub === 'chat' ? CHAT_FLAGS : sub === 'export' ? EXPORT_FLAGS : TRAIN_FLAGS;
    const args =
      sub !== 'pretrain' && given[0] !== undefined && isRecipePath(given[0])
        ? [...(await recipeArgs(given[0], recipeFlags)), ...given.slice(1)]
        : given;
    if (sub === 'chat') {
      const values = parseFlags(args, CHAT_FLAGS);
      if (values.help) {
        io.log(`Usage: badam-llama chat --model_name_or_path <dir> [flags]\n${flagHelp(CHAT_FLAGS)}`);
        return 0;
      }
      await runChat(values, io, input);
      return 0;
    }
    if (sub === 'export') {
      const values = parseFlags(args, EXPORT_FLAGS);
      if (values.help) {
        io.log(
          `Usage: badam-llama export [recipe.yaml] --model_name_or_path <base> --adapter_name_or_path <dir> --export_dir <dir> [flags]\n${flagHelp(EXPORT_FLAGS)}`,
        );
        return 0;
      }
      await runExport(values, io, recordedTemplate);
      return 0;
    }
    if (sub === 'pretrain') {
      const values = parseFlags(args, PRETRAIN_FLAGS);
      if (values.help) {
        io.log(`Usage: badam-llama pretrain [flags]\n${flagHelp(PRETRAIN_FLAGS)}`);
        return 0;
      }
      // The training options give the backend; the pretraining's own settings come from its flags.
      const { options } = trainOptionsFrom([
        '--logging_steps',
        '10',
        '--output_dir',
        values.log_dir as string,
      ]);
      await runPretraining(
        options,
        pretrainSettingsFrom(values),
        { outputDir: values.output_dir as string, logDir: values.log_dir as string },
        io,
        values.snapshot_every as number,
      );
      return 0;
    }
    if (sub === 'compare') return runComparisonCommand(args, COMPARE_RUN, io);
    const { options, embedded, help, notes } = trainOptionsFrom(args);
    if (help) {
      io.log(USAGE);
      return 0;
    }
    for (const note of notes) io.warn(`${LLAMA_DIALECT.name}: ${note}`);
    let template = options.template ?? 'default';
    if (embedded) {
      await runEmbeddedDefault(options, io);
    } else {
      const run = await runTraining(options, io);
      template = run.template.name;
      const summary = Object.entries(run.metrics)
        .filter(([k]) =>
          /^(train_loss|eval_loss|eval_accuracy|train_runtime|train_tokens_per_second|peak_memory_bytes|estimated_memory_bytes|predict_exact_match)$/.test(
            k,
          ),
        )
        .map(([k, v]) => `${k} ${typeof v === 'number' ? Number(v.toPrecision(6)) : v}`)
        .join(', ');
      io.log(`done: ${summary}\noutputs in ${run.outputDir}`);
      run.deviceModel?.dispose();
    }
    await writeJson(join(options.outputDir, 'badam_llama.json'), {
      template,
      argv,
    });
    return 0;
  });
}
