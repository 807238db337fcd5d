import { join } from 'node:path';
import { bandOf, type RunIO, readTrainerLog, writeBandPlot, writeResultsJson } from '@badam/callbacks';
import { writeFileAtomic } from '@badam/safetensors';
import type { ComparisonPlan } from './comparison-flags.js';
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

/** One run of a comparison: a method at a rate on a seed, in its own output directory. */
export interface ComparisonCell {
  readonly method: string;
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
 * A cell's result from what its training run left: the memory and time of the run's metrics (as
 * `fineTune` reports them), the training loss curve of its trainer_log.jsonl, and the split scores the
 * runner measured.
 */
export async function comparisonCellResult(run: {
  readonly outputDir: string;
  readonly metrics: Readonly<Record<string, number | string>>;
  readonly seconds: number;
  readonly test: Readonly<Record<string, number>>;
  readonly validation?: Readonly<Record<string, number>> | undefined;
}): Promise<ComparisonCellResult> {
  const number = (key: string) => Number(run.metrics[key]);
  const log = await readTrainerLog(join(run.outputDir, 'trainer_log.jsonl'));
  return {
    test: run.test,
    ...(run.validation !== undefined ? { validation: run.validation } : {}),
    peakMemoryBytes: number('peak_memory_bytes'),
    estimatedMemoryBytes: number('estimated_memory_bytes'),
    estimatedOptimizerBytes:
      number('estimated_masters_bytes') +
      number('estimated_gradients_bytes') +
      number('estimated_optimizer_bytes'),
    seconds: run.seconds,
    lossCurve: log
      .filter((l) => typeof l.loss === 'number')
      .map((l) => ({ step: l.current_steps as number, value: l.loss as number })),
  };
}

/** A comparison as a runner describes it to {@link runSeedComparison}. */
export interface SeedComparisonSpec {
  readonly methods: readonly string[];
  readonly plan: ComparisonPlan;
  readonly outputDir: string;
  /** The scores of the table, in order; `selectBy` names the one a rate is chosen by. */
  readonly metrics: readonly ComparisonMetric[];
  /** The metric key the rate is chosen by, and its direction. */
  readonly selectBy: { readonly key: string; readonly lowerIsBetter: boolean };
  /** Title of compare_loss.png. */
  readonly title: string;
  /** Trains and scores one cell. */
  run(cell: ComparisonCell): Promise<ComparisonCellResult>;
  readonly io: RunIO;
}

/** One method's line of the table: its (chosen) rate and every number as mean and spread over the seeds. */
export interface ComparisonRow {
  readonly method: string;
  readonly learningRate: number;
  readonly test: Readonly<Record<string, SeedSummary>>;
  readonly peakMemoryBytes: SeedSummary;
  readonly estimatedMemoryBytes: SeedSummary;
  readonly estimatedOptimizerBytes: SeedSummary;
  readonly seconds: SeedSummary;
}

/** One method at one rate on the validation split (the numbers the rate was chosen by). */
export interface ComparisonSelectionRow {
  readonly method: string;
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
 * Runs every method on every seed (and every rate of `--learning_rates`) through `spec.run`, and reports
 * each method as mean ± sample sd over the seeds: with several rates, each method's rate is the one with the
 * best mean validation score (`spec.selectBy`), and the table reports the test split only, at that rate.
 * Writes into `spec.outputDir`: compare_table.md, compare_results.json (every run's numbers; rewritten after
 * each run, so an interrupted comparison keeps what it measured) and compare_loss.png (each method's
 * training loss at its rate: the mean over seeds, with the min-max band).
 */
export async function runSeedComparison(spec: SeedComparisonSpec): Promise<ComparisonReport> {
  const { plan, io } = spec;
  const runs: Array<ComparisonCell & ComparisonCellResult> = [];
  const resultsPath = join(spec.outputDir, 'compare_results.json');
  const header = {
    seeds: plan.seeds,
    learning_rates: plan.learningRates,
    selected_by: plan.chooseRate ? `mean validation ${spec.selectBy.key}` : 'one rate, no selection',
    sd: 'sample standard deviation over seeds (n - 1)',
    band: COMPARISON_BAND,
  };
  // Seeds outermost: an interrupted comparison has every method on its first seeds.
  for (const learningRate of plan.learningRates) {
    for (const seed of plan.seeds) {
      for (const method of spec.methods) {
        const cell: ComparisonCell = {
          method,
          seed,
          learningRate,
          outputDir: join(
            spec.outputDir,
            method,
            plan.learningRates.length > 1 ? `lr-${formatRate(learningRate)}-seed-${seed}` : `seed-${seed}`,
          ),
          scoreValidation: plan.chooseRate,
        };
        io.log(`\n== ${method}, lr ${formatRate(learningRate)}, seed ${seed} ==`);
        runs.push({ ...cell, ...(await spec.run(cell)) });
        await writeResultsJson(resultsPath, { ...header, runs });
      }
    }
  }

  const summarize = (
    cells: typeof runs,
    pick: (r: (typeof runs)[number]) => Readonly<Record<string, number>>,
  ) =>
    Object.fromEntries(spec.metrics.map((m) => [m.key, summarizeSeeds(cells.map((r) => pick(r)[m.key]!))]));
  const cellsOf = (method: string, rate: number) =>
    runs.filter((r) => r.method === method && r.learningRate === rate);
  const selection: ComparisonSelectionRow[] = [];
  const rows: ComparisonRow[] = spec.methods.map((method) => {
    let learningRate = plan.learningRates[0]!;
    if (plan.chooseRate) {
      const scored = plan.learningRates.map((rate) => ({
        rate,
        validation: summarize(cellsOf(method, rate), (r) => r.validation ?? {}),
      }));
      const score = (s: (typeof scored)[number]) =>
        (spec.selectBy.lowerIsBetter ? 1 : -1) * s.validation[spec.selectBy.key]!.mean;
      const best = scored.reduce((a, b) => (score(b) < score(a) ? b : a));
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

  const table = comparisonTable(spec, rows, selection);
  await writeBandPlot(
    join(spec.outputDir, 'compare_loss.png'),
    rows.map((row) => ({
      label: `${row.method} (lr ${formatRate(row.learningRate)})`,
      points: bandOf(cellsOf(row.method, row.learningRate).map((r) => r.lossCurve)),
    })),
    { title: spec.title, bandLabel: `${COMPARISON_BAND} (${plan.seeds.length})` },
  );
  await writeResultsJson(resultsPath, { ...header, rows, selection, runs });
  await writeFileAtomic(join(spec.outputDir, 'compare_table.md'), [`${table}\n`]);
  io.log(`\n${table}\n\nloss curves: ${join(spec.outputDir, 'compare_loss.png')}`);
  return { rows, selection, runs, table };
}

/** The Markdown of a comparison: the test table, and with several rates the validation scores behind the choice. */
function comparisonTable(
  spec: SeedComparisonSpec,
  rows: readonly ComparisonRow[],
  selection: readonly ComparisonSelectionRow[],
): string {
  const { plan } = spec;
  const score = (m: ComparisonMetric, s: SeedSummary) =>
    m.percent ? formatMeanSd(s, m.digits, 100, '%') : formatMeanSd(s, m.digits);
  const split = plan.chooseRate ? 'test split' : 'held-out split';
  const lines = [
    `${split}; mean ± sample sd over seeds ${plan.seeds.join(', ')}${plan.chooseRate ? `; each method's rate chosen by mean validation ${spec.selectBy.key} among ${plan.learningRates.map(formatRate).join(', ')}` : ''}`,
    '',
    `| method | learning rate | peak memory measured (MB) | estimated total (MB) | estimated grads + optimizer (MB) | time (s) | ${spec.metrics.map((m) => m.label).join(' | ')} |`,
    `| --- | --- | --- | --- | --- | --- | ${spec.metrics.map(() => '---').join(' | ')} |`,
    ...rows.map(
      (r) =>
        `| ${r.method} | ${formatRate(r.learningRate)}${plan.chooseRate ? ' (chosen)' : ''} | ${MB(r.peakMemoryBytes.mean)} | ${MB(r.estimatedMemoryBytes.mean)} | ${MB(r.estimatedOptimizerBytes.mean)} | ${formatMeanSd(r.seconds, 0)} | ${spec.metrics.map((m) => score(m, r.test[m.key]!)).join(' | ')} |`,
    ),
  ];
  if (selection.length > 0) {
    lines.push(
      '',
      'validation split (the rate is chosen here; these numbers are not the result)',
      '',
      `| method | learning rate | ${spec.metrics.map((m) => `validation ${m.label}`).join(' | ')} |`,
      `| --- | --- | ${spec.metrics.map(() => '---').join(' | ')} |`,
      ...selection.map(
        (s) =>
          `| ${s.method} | ${s.chosen ? `**${formatRate(s.learningRate)}**` : formatRate(s.learningRate)} | ${spec.metrics.map((m) => score(m, s.validation[m.key]!)).join(' | ')} |`,
      ),
    );
  }
  return lines.join('\n');
}
