import { join } from 'node:path';
import { bandOf, type RunIO, readTrainerLog, writeBandPlot, writeResultsJson } from '@badam/callbacks';
import { FINE_TUNING_METHODS, type FineTuningMethod } from '@badam/core';
import { writeFileAtomic } from '@badam/safetensors';
import type { ComparisonPlan } from './comparison-command.js';
import type { RunnerDialect, RunOptions } from './run-options.js';
import { prepareRunOutputDir } from './run-output-dir.js';
import { formatMeanSd, type SeedSummary, summarizeSeeds } from './seed-statistics.js';

/** A score `compare` reports on a held-out split: its key in the runs' results and how to print it. */
export interface ComparisonMetric {
  readonly key: string;
  readonly label: string;
  /** Decimals printed. */
  readonly digits: number;
  /** A fraction printed as a percentage. */
  readonly percent?: boolean;
}

/** Eval loss, the score every comparison reports first and chooses learning rates by (lower is better). */
export const EVAL_LOSS_METRIC: ComparisonMetric = { key: 'eval_loss', label: 'eval loss', digits: 4 };

/** One run of a comparison: a method at a rate on a seed, in its own output directory. */
export interface ComparisonCell {
  readonly method: FineTuningMethod;
  readonly seed: number;
  readonly learningRate: number;
  readonly outputDir: string;
  /** Score the validation split too: the rate is chosen on it. */
  readonly scoreValidation: boolean;
}

/** What one run measured. */
export interface ComparisonCellResult {
  /** Scores on the test split, by {@link ComparisonMetric.key}. */
  readonly test: Readonly<Record<string, number>>;
  /** Scores on the validation split (when the cell asked for them). */
  readonly validation?: Readonly<Record<string, number>>;
  readonly peakMemoryBytes: number;
  readonly estimatedMemoryBytes: number;
  readonly estimatedOptimizerBytes: number;
  readonly seconds: number;
  /** Training loss by step. */
  readonly lossCurve: ReadonlyArray<{ readonly step: number; readonly value: number }>;
}

/**
 * The run options of one cell: the comparison's options with the cell's method, seed, rate and output
 * directory (replaced without asking: the comparison's own directory was checked), K only for the methods
 * that switch (`defaultSwitchEvery` when the options have none), and no loss plot of its own.
 */
export function comparisonRunOptions<TOptions extends RunOptions>(
  options: TOptions,
  cell: ComparisonCell,
  defaultSwitchEvery?: number,
): TOptions {
  const switches = cell.method === 'block' || cell.method === 'sparse';
  return {
    ...options,
    method: cell.method,
    seed: cell.seed,
    learningRate: cell.learningRate,
    switchBlockEvery: switches ? (options.switchBlockEvery ?? defaultSwitchEvery) : undefined,
    outputDir: cell.outputDir,
    outputDirIsDefault: false,
    overwriteOutputDir: true,
    plotLoss: false,
  };
}

/** A trained cell, as the runner hands it back: its run's metrics, and its model to score and free. */
export interface TrainedCell {
  /** The run's metrics as `fineTune` reports them (memory measured and estimated). */
  readonly metrics: Readonly<Record<string, number | string>>;
  /** Scores of the trained model on a split, by {@link ComparisonMetric.key} (`eval_loss` and the runner's). */
  score(split: 'test' | 'validation'): Promise<Record<string, number>>;
  /** Frees the trained model. */
  dispose(): void;
}

/** A comparison as a runner describes it to {@link runSeedComparison}. */
export interface SeedComparisonSpec {
  /** The comparison's own options: `--output_dir` (checked before any work), `--overwrite_output_dir`. */
  readonly options: RunOptions;
  readonly dialect: RunnerDialect;
  readonly plan: ComparisonPlan;
  /** Default: every fine-tuning method (block, full, lora, sparse). */
  readonly methods?: readonly FineTuningMethod[];
  /** The scores of the table after eval loss ({@link EVAL_LOSS_METRIC}, which chooses the rate), in order. */
  readonly metrics: readonly ComparisonMetric[];
  /** Title of compare_loss.png. */
  readonly title: string;
  /** Work shared by every cell, once the output directory is known to be free (badam-llama's pretraining). */
  prepare?(): Promise<void>;
  /** Trains one cell (in `cell.outputDir`, with `comparisonRunOptions`). */
  train(cell: ComparisonCell): Promise<TrainedCell>;
  readonly io: RunIO;
}

/** One method's line of the table: its (chosen) rate and every number as mean and spread over the seeds. */
export interface ComparisonRow {
  readonly method: FineTuningMethod;
  readonly learningRate: number;
  readonly test: Readonly<Record<string, SeedSummary>>;
  readonly peakMemoryBytes: SeedSummary;
  readonly estimatedMemoryBytes: SeedSummary;
  readonly estimatedOptimizerBytes: SeedSummary;
  readonly seconds: SeedSummary;
}

/** One method at one rate on the validation split (the numbers the rate was chosen by). */
export interface ComparisonSelectionRow {
  readonly method: FineTuningMethod;
  readonly learningRate: number;
  readonly chosen: boolean;
  readonly validation: Readonly<Record<string, SeedSummary>>;
}

/** What {@link runSeedComparison} produced (also in compare_results.json). */
export interface ComparisonReport {
  readonly rows: readonly ComparisonRow[];
  readonly selection: readonly ComparisonSelectionRow[];
  /** Every run's numbers. */
  readonly runs: ReadonlyArray<ComparisonCell & ComparisonCellResult>;
  /** The Markdown written to compare_table.md. */
  readonly table: string;
}

/** The band of compare_loss.png. */
export const COMPARISON_BAND = 'min-max over seeds';

const MB = (b: number) => (b / 1e6).toFixed(2);

/** A rate as typed on the command line (`0.002` -> `2e-3`). */
export function formatRate(rate: number): string {
  return rate.toExponential().replace('e+', 'e');
}

/**
 * Runs every method on every seed (and every rate of `--learning_rates`) through `spec.train`, and reports
 * each method as mean ± sample sd over the seeds: with several rates, each method's rate is the one with the
 * lowest mean validation eval loss, and the table reports the test split only, at that rate.
 * Checks `--output_dir` first (an earlier run's is refused without `--overwrite_output_dir`), then
 * `spec.prepare`. Writes into the output directory: compare_table.md, compare_results.json (every run's numbers; rewritten after
 * each run, so an interrupted comparison keeps what it measured) and compare_loss.png (each method's
 * training loss at its rate: the mean over seeds, with the min-max band).
 */
export async function runSeedComparison(spec: SeedComparisonSpec): Promise<ComparisonReport> {
  const { plan, io } = spec;
  // Never an earlier comparison's directory without --overwrite_output_dir (a default one moves to a sibling).
  const outputDir = await prepareRunOutputDir(spec.options, spec.dialect, io);
  await spec.prepare?.();
  const methods = spec.methods ?? FINE_TUNING_METHODS;
  const metrics = [EVAL_LOSS_METRIC, ...spec.metrics];
  const runs: Array<ComparisonCell & ComparisonCellResult> = [];
  const resultsPath = join(outputDir, 'compare_results.json');
  const header = {
    seeds: plan.seeds,
    learning_rates: plan.learningRates,
    selected_by: plan.chooseRate ? 'mean validation eval_loss (lowest)' : 'one rate, no selection',
    sd: 'sample standard deviation over seeds (n - 1)',
    band: COMPARISON_BAND,
  };
  // Seeds outermost: an interrupted comparison has every method on its first seeds.
  for (const learningRate of plan.learningRates) {
    for (const seed of plan.seeds) {
      for (const method of methods) {
        const cell: ComparisonCell = {
          method,
          seed,
          learningRate,
          outputDir: join(
            outputDir,
            method,
            plan.learningRates.length > 1 ? `lr-${formatRate(learningRate)}-seed-${seed}` : `seed-${seed}`,
          ),
          scoreValidation: plan.chooseRate,
        };
        io.log(`\n== ${method}, lr ${formatRate(learningRate)}, seed ${seed} ==`);
        runs.push({ ...cell, ...(await runCell(spec, cell)) });
        await writeResultsJson(resultsPath, { ...header, runs });
      }
    }
  }

  const summarize = (
    cells: typeof runs,
    pick: (r: (typeof runs)[number]) => Readonly<Record<string, number>>,
  ) => Object.fromEntries(metrics.map((m) => [m.key, summarizeSeeds(cells.map((r) => pick(r)[m.key]!))]));
  const cellsOf = (method: FineTuningMethod, rate: number) =>
    runs.filter((r) => r.method === method && r.learningRate === rate);
  const selection: ComparisonSelectionRow[] = [];
  const rows: ComparisonRow[] = methods.map((method) => {
    let learningRate = plan.learningRates[0]!;
    if (plan.chooseRate) {
      const scored = plan.learningRates.map((rate) => ({
        rate,
        validation: summarize(cellsOf(method, rate), (r) => r.validation ?? {}),
      }));
      const loss = (s: (typeof scored)[number]) => s.validation[EVAL_LOSS_METRIC.key]!.mean;
      const best = scored.reduce((a, b) => (loss(b) < loss(a) ? b : a));
      learningRate = best.rate;
      for (const s of scored)
        selection.push({ method, learningRate: s.rate, chosen: s === best, validation: s.validation });
    }
    const cells = cellsOf(method, learningRate);
    return {
      method,
      learningRate,
      test: summarize(cells, (r) => r.test),
      peakMemoryBytes: summarizeSeeds(cells.map((r) => r.peakMemoryBytes)),
      estimatedMemoryBytes: summarizeSeeds(cells.map((r) => r.estimatedMemoryBytes)),
      estimatedOptimizerBytes: summarizeSeeds(cells.map((r) => r.estimatedOptimizerBytes)),
      seconds: summarizeSeeds(cells.map((r) => r.seconds)),
    };
  });

  const table = comparisonTable(plan, metrics, rows, selection);
  await writeBandPlot(
    join(outputDir, 'compare_loss.png'),
    rows.map((row) => ({
      label: `${row.method} (lr ${formatRate(row.learningRate)})`,
      points: bandOf(cellsOf(row.method, row.learningRate).map((r) => r.lossCurve)),
    })),
    { title: spec.title, bandLabel: `${COMPARISON_BAND} (${plan.seeds.length})` },
  );
  await writeResultsJson(resultsPath, { ...header, rows, selection, runs });
  await writeFileAtomic(join(outputDir, 'compare_table.md'), [`${table}\n`]);
  io.log(`\n${table}\n\nloss curves: ${join(outputDir, 'compare_loss.png')}`);
  return { rows, selection, runs, table };
}

/** The Markdown of a comparison: the test table, and with several rates the validation scores behind the choice. */
function comparisonTable(
  plan: ComparisonPlan,
  metrics: readonly ComparisonMetric[],
  rows: readonly ComparisonRow[],
  selection: readonly ComparisonSelectionRow[],
): string {
  const score = (m: ComparisonMetric, s: SeedSummary) =>
    m.percent ? formatMeanSd(s, m.digits, 100, '%') : formatMeanSd(s, m.digits);
  const split = plan.chooseRate ? 'test split' : 'held-out split';
  const lines = [
    `${split}; mean ± sample sd over seeds ${plan.seeds.join(', ')}${plan.chooseRate ? `; each method's rate chosen by mean validation eval loss among ${plan.learningRates.map(formatRate).join(', ')}` : ''}`,
    '',
    `| method | learning rate | peak memory measured (MB) | estimated total (MB) | estimated grads + optimizer (MB) | time (s) | ${metrics.map((m) => m.label).join(' | ')} |`,
    `| --- | --- | --- | --- | --- | --- | ${metrics.map(() => '---').join(' | ')} |`,
    ...rows.map(
      (r) =>
        `| ${r.method} | ${formatRate(r.learningRate)}${plan.chooseRate ? ' (chosen)' : ''} | ${MB(r.peakMemoryBytes.mean)} | ${MB(r.estimatedMemoryBytes.mean)} | ${MB(r.estimatedOptimizerBytes.mean)} | ${formatMeanSd(r.seconds, 0)} | ${metrics.map((m) => score(m, r.test[m.key]!)).join(' | ')} |`,
    ),
  ];
  if (selection.length > 0) {
    lines.push(
      '',
      'validation split (the rate is chosen here; these numbers are not the result)',
      '',
      `| method | learning rate | ${metrics.map((m) => `validation ${m.label}`).join(' | ')} |`,
      `| --- | --- | ${metrics.map(() => '---').join(' | ')} |`,
      ...selection.map(
        (s) =>
          `| ${s.method} | ${s.chosen ? `**${formatRate(s.learningRate)}**` : formatRate(s.learningRate)} | ${metrics.map((m) => score(m, s.validation[m.key]!)).join(' | ')} |`,
      ),
    );
  }
  return lines.join('\n');
}

/** Trains, times and scores one cell: memory from its metrics, the loss curve from its trainer_log.jsonl. */
async function runCell(spec: SeedComparisonSpec, cell: ComparisonCell): Promise<ComparisonCellResult> {
  const began = performance.now();
  const trained = await spec.train(cell);
  const seconds = (performance.now() - began) / 1000;
  try {
    const test = await trained.score('test');
    const validation = cell.scoreValidation ? await trained.score('validation') : undefined;
    const number = (key: string) => Number(trained.metrics[key]);
    const log = await readTrainerLog(join(cell.outputDir, 'trainer_log.jsonl'));
    return {
      test,
      ...(validation !== undefined ? { validation } : {}),
      peakMemoryBytes: number('peak_memory_bytes'),
      estimatedMemoryBytes: number('estimated_memory_bytes'),
      estimatedOptimizerBytes:
        number('estimated_masters_bytes') +
        number('estimated_gradients_bytes') +
        number('estimated_optimizer_bytes'),
      seconds,
      lossCurve: log
        .filter((l) => typeof l.loss === 'number')
        .map((l) => ({ step: l.current_steps as number, value: l.loss as number })),
    };
  } finally {
    trained.dispose();
  }
}
