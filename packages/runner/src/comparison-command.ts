import type { RunIO } from '@badam/callbacks';
import { type FlagSpec, type FlagValues, UsageError } from '@badam/core';
import { parseRunnerCommand, type RunnerCommandSpec, type RunOptions } from './run-options.js';

/** The flags of a runner's `compare` command, on top of its training flags. */
export const COMPARISON_FLAGS: Readonly<Record<string, FlagSpec>> = {
  seeds: {
    type: 'integer',
    min: 1,
    default: 3,
    help: 'compare: runs of every method (and rate), on seeds --seed, --seed+1, ...; the starting model stays the same',
  },
  learning_rates: {
    type: 'string',
    help: "compare: rates to choose from, comma-separated (1e-3,2e-3,5e-3): each method's is chosen by its mean validation eval loss, the table reports the test split (default: --learning_rate only)",
  },
};

/** What `compare` runs: the seeds, the rates, and whether a rate is chosen on a validation split. */
export interface ComparisonPlan {
  readonly seeds: readonly number[];
  readonly learningRates: readonly number[];
  /** More than one rate: each method's is chosen on the validation split, and only the test split is reported. */
  readonly chooseRate: boolean;
}

/**
 * Reads `--seeds` and `--learning_rates` (validated here, before any work, in their own names); `seed` is
 * the run's `--seed`, the first of the seeds, and `learningRate` its `--learning_rate`, used when
 * `--learning_rates` is not given.
 */
export function resolveComparisonPlan(
  values: FlagValues,
  seed: number,
  learningRate: number,
): ComparisonPlan {
  const count = (values.seeds as number | undefined) ?? 3;
  const seeds = Array.from({ length: count }, (_, i) => seed + i);
  const given = values.learning_rates as string | undefined;
  if (given === undefined) return { seeds, learningRates: [learningRate], chooseRate: false };
  const parts = given.split(',').map((s) => s.trim());
  const rates = parts.map(Number);
  const bad = parts.find((p, i) => p === '' || !Number.isFinite(rates[i]) || rates[i]! <= 0);
  if (bad !== undefined)
    throw new UsageError(
      `--learning_rates must be numbers > 0 separated by commas (e.g. 1e-3,2e-3,5e-3), got "${given}" ("${bad}" is not a number > 0)`,
    );
  if (new Set(rates).size !== rates.length)
    throw new UsageError(`--learning_rates lists a rate twice ("${given}"): give each rate once`);
  return { seeds, learningRates: rates, chooseRate: rates.length > 1 };
}

/**
 * A runner's `compare` command from its training command: the same flags plus {@link COMPARISON_FLAGS},
 * and the options carry the comparison's plan.
 */
export function comparisonCommand<TOptions extends RunOptions>(
  command: RunnerCommandSpec<TOptions>,
): RunnerCommandSpec<TOptions & { comparison: ComparisonPlan }> {
  return {
    ...command,
    flags: { ...command.flags, ...COMPARISON_FLAGS },
    resolve: (values) => {
      const options = command.resolve(values);
      return Object.assign(options, {
        comparison: resolveComparisonPlan(values, options.seed, options.learningRate),
      });
    },
  };
}

/** How {@link runComparisonCommand} runs a runner's `compare`. */
export interface ComparisonCommandRun<TOptions extends RunOptions> {
  /** The runner's `compare` command ({@link comparisonCommand} of its training command). */
  readonly command: RunnerCommandSpec<TOptions & { comparison: ComparisonPlan }>;
  /** What `--help` prints. */
  readonly usage: string;
  /** The output directory when the command line names none (`output/compare`). */
  readonly defaultOutputDir: string;
  /** Runs the comparison the options and the plan describe. */
  compare(options: TOptions, plan: ComparisonPlan, io: RunIO): Promise<unknown>;
}

/**
 * A runner's `compare [flags]`: parses its flags (the training flags and {@link COMPARISON_FLAGS}), prints
 * the usage for `--help`, says which flags were accepted but ignored, and runs the comparison in its own
 * default output directory unless `--output_dir` names one. Resolves to the exit code.
 */
export async function runComparisonCommand<TOptions extends RunOptions>(
  argv: readonly string[],
  run: ComparisonCommandRun<TOptions>,
  io: RunIO,
): Promise<number> {
  const { options, help, notes } = parseRunnerCommand(argv, run.command);
  if (help) {
    io.log(run.usage);
    return 0;
  }
  for (const note of notes) io.warn(`${run.command.dialect.name}: ${note}`);
  if (options.outputDirIsDefault) options.outputDir = run.defaultOutputDir;
  await run.compare(options, options.comparison, io);
  return 0;
}
