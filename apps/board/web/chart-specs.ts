import { type Curve, meanBand, spreadTies } from './align-series.js';
import type { BandSpec, ChartSpec, SeriesSpec } from './chart-panel.js';
import { type RunSeries, smoothSeries } from './run-series.js';

/** A run as the charts know it. */
export interface ChartRun {
  readonly id: number;
  readonly name: string;
  /** Where the run is, when it is on disk. */
  readonly dir?: string;
  /** In a comparison: the method (and rate), whose seeds can be drawn as one mean with a band. */
  readonly group?: string;
  readonly seed?: number;
  readonly comparison?: number;
}

/** A run shown, with its colour and series. */
export interface ShownRun {
  readonly run: ChartRun;
  readonly color: string;
  readonly s: RunSeries;
}

/** A comparison's method drawn as one: the mean of its seeds' runs and their lowest-highest band. */
export interface ShownGroup {
  readonly label: string;
  readonly color: string;
  readonly members: readonly ShownRun[];
}

/** What the person chose in the toolbar. */
export interface ChartView {
  readonly xAxis: 'step' | 'time';
  /** The smoothing weight, or undefined for LLaMA-Factory's (from the curve's length). */
  readonly smoothing: number | undefined;
  readonly logLoss: boolean;
  /** Label curves with the run's name (more than one run or group shown). */
  readonly many: boolean;
}

/** Memory is charted in MiB (2^20 bytes), and labelled so. */
export const MIB = 2 ** 20;
export const formatMiB = (v: number) => `${v.toFixed(v < 10 ? 2 : 1)} MiB`;

/** Dashes of the memory kinds; the legend's swatches draw the same. */
export const KIND_DASH: Readonly<Record<string, number[]>> = {
  weights: [],
  masters: [6, 3],
  gradients: [2, 2],
  optimizer: [8, 3, 2, 3],
  optimizerState: [8, 3, 2, 3],
  activations: [1, 3],
  other: [4, 4],
};

/** Pick a run's curve: x values (steps) and values, aligned. */
type Pick = (s: RunSeries) => {
  steps: readonly number[];
  seconds: ReadonlyArray<number | null>;
  y: ReadonlyArray<number | null>;
};

const training =
  (y: (s: RunSeries) => ReadonlyArray<number | null>): Pick =>
  (s) => ({ steps: s.steps, seconds: s.elapsed, y: y(s) });

/** The curve of a run on the chosen x axis, with the step of each point. */
function curveOf(view: ChartView, picked: ReturnType<Pick>): { curve: Curve; steps: readonly number[] } {
  const x = view.xAxis === 'step' ? picked.steps : spreadTies(picked.seconds);
  return { curve: { x, y: picked.y }, steps: picked.steps };
}

const scaled = (values: ReadonlyArray<number | null>, by: number) =>
  values.map((v) => (v === null ? null : v / by));

/** A chart's curves per run, or per group as mean and band. */
function perRunOrGroup(
  view: ChartView,
  runs: readonly ShownRun[],
  groups: readonly ShownGroup[],
  what: string,
  pick: Pick,
  style: Partial<SeriesSpec> = {},
): { series: SeriesSpec[]; bands: BandSpec[] } {
  const label = (name: string) => (view.many ? `${name}: ${what}` : what);
  const series: SeriesSpec[] = runs.map(({ run, color, s }) => {
    const { curve, steps } = curveOf(view, pick(s));
    return { ...style, label: label(run.name), color, curve, steps };
  });
  const bands: BandSpec[] = [];
  for (const group of groups) {
    const band = meanBand(group.members.map(({ s }) => ({ x: pick(s).steps, y: pick(s).y })));
    series.push({
      ...style,
      label: label(`${group.label} mean`),
      color: group.color,
      curve: { x: band.x, y: band.mean },
    });
    bands.push({
      label: label(`${group.label} lowest-highest of ${group.members.length}`),
      color: group.color,
      lower: { x: band.x, y: band.low },
      upper: { x: band.x, y: band.high },
    });
  }
  return { series, bands };
}

/** Loss: raw (faint), smoothed and eval loss per run; a group's mean loss, smoothed, its band and mean eval. */
export function lossSpec(
  view: ChartView,
  runs: readonly ShownRun[],
  groups: readonly ShownGroup[],
): ChartSpec {
  const positive = (y: readonly number[]) => (view.logLoss ? y.map((v) => (v > 0 ? v : null)) : y);
  const series: SeriesSpec[] = [];
  const bands: BandSpec[] = [];
  const label = (name: string, what: string) => (view.many ? `${name}: ${what}` : what);
  for (const { run, color, s } of runs) {
    const raw = curveOf(view, { steps: s.steps, seconds: s.elapsed, y: positive(s.loss) });
    const smooth = curveOf(view, {
      steps: s.steps,
      seconds: s.elapsed,
      y: positive(s.smoothedLoss(view.smoothing)),
    });
    const evals = curveOf(view, { steps: s.evalSteps, seconds: s.evalElapsed, y: positive(s.evalLoss) });
    series.push(
      { label: label(run.name, 'loss'), color, alpha: 0.35, width: 1, ...raw },
      { label: label(run.name, 'smoothed'), color, width: 2.5, ...smooth },
      { label: label(run.name, 'eval loss'), color, points: true, ...evals },
    );
  }
  for (const group of groups) {
    const band = meanBand(group.members.map(({ s }) => ({ x: s.steps, y: s.loss })));
    const evals = meanBand(group.members.map(({ s }) => ({ x: s.evalSteps, y: s.evalLoss })));
    series.push(
      {
        label: label(group.label, 'mean loss'),
        color: group.color,
        alpha: 0.35,
        width: 1,
        curve: { x: band.x, y: positive(band.mean) },
      },
      {
        label: label(group.label, 'smoothed mean'),
        color: group.color,
        width: 2.5,
        curve: { x: band.x, y: positive(smoothSeries(band.mean, view.smoothing)) },
      },
      {
        label: label(group.label, 'mean eval loss'),
        color: group.color,
        points: true,
        curve: { x: evals.x, y: positive(evals.mean) },
      },
    );
    bands.push({
      label: label(group.label, `lowest-highest loss of ${group.members.length}`),
      color: group.color,
      lower: { x: band.x, y: positive(band.low) },
      upper: { x: band.x, y: positive(band.high) },
    });
  }
  return { yLabel: 'loss', xAxis: view.xAxis, log: view.logLoss, series, bands };
}

/** Evaluation scores other than the loss (eval_accuracy, ...), per run or per group. */
export function evalSpec(
  view: ChartView,
  runs: readonly ShownRun[],
  groups: readonly ShownGroup[],
): ChartSpec {
  const keys = [
    ...new Set([...runs, ...groups.flatMap((g) => g.members)].flatMap(({ s }) => [...s.evalScores.keys()])),
  ].sort();
  const series: SeriesSpec[] = [];
  const bands: BandSpec[] = [];
  for (const key of keys) {
    const pick: Pick = (s) => {
      const score = s.evalScores.get(key);
      return { steps: score?.steps ?? [], seconds: score?.elapsed ?? [], y: score?.values ?? [] };
    };
    const part = perRunOrGroup(view, runs, groups, key.replace(/^eval_/, ''), pick, { width: 1.5 });
    series.push(...part.series);
    bands.push(...part.bands);
  }
  return { yLabel: 'score', xAxis: view.xAxis, series, bands };
}

/** BAdam's block timeline: which block trained at each step, and each switch. Always per run. */
export function timelineSpec(view: ChartView, runs: readonly ShownRun[]): ChartSpec {
  const blocked = runs.filter(({ s }) => s.firstBlock !== undefined);
  const series = blocked.flatMap(({ run, color, s }): SeriesSpec[] => {
    const segments = s.timeline();
    const steps = segments.flatMap((g) => [g.first, g.last]);
    const at = (step: number) => (view.xAxis === 'step' ? step : (s.secondsAt(step) ?? null));
    const name = (what: string) => (view.many ? `${run.name}: ${what}` : what);
    return [
      {
        label: name('block'),
        color,
        width: 3,
        stepped: true,
        curve: { x: steps.map(at), y: segments.flatMap((g) => [g.block, g.block]) },
        steps,
        describe: (i) => {
          const g = segments[Math.floor(i / 2)]!;
          return `block ${g.block} (steps ${g.first}-${g.last})`;
        },
      },
      {
        label: name('switch'),
        color,
        points: true,
        curve: { x: s.switches.map((c) => at(c.step)), y: s.switches.map((c) => c.to) },
        steps: s.switches.map((c) => c.step),
        describe: (i) => {
          const c = s.switches[i]!;
          return `after step ${c.step}: block ${c.from} → ${c.to}`;
        },
      },
    ];
  });
  return {
    yLabel: 'block',
    xAxis: view.xAxis,
    format: (v) => (Number.isInteger(v) ? String(v) : ''),
    series,
  };
}

/** A chart of one training quantity (learning rate, gradient norm, tokens/s). */
export function quantitySpec(
  view: ChartView,
  runs: readonly ShownRun[],
  groups: readonly ShownGroup[],
  what: string,
  y: (s: RunSeries) => ReadonlyArray<number | null>,
): ChartSpec {
  const { series, bands } = perRunOrGroup({ ...view, many: true }, runs, groups, what, training(y));
  // One quantity per chart: the run's name alone labels its curve.
  const named = series.map((s) => ({ ...s, label: s.label.replace(new RegExp(`: ${what}$`), '') }));
  const bandsNamed = bands.map((b) => ({ ...b, label: b.label.replace(new RegExp(`: ${what}$`), '') }));
  return { yLabel: what, xAxis: view.xAxis, series: named, bands: bandsNamed };
}

/**
 * Memory held between steps, in MiB: the total (solid, thick) and each kind (dashed by kind), per run or
 * per group, with BAdam's block switches marked (a dip at a switch is the old block's state let go, not
 * memory freed for good).
 */
export function memorySpec(
  view: ChartView,
  runs: readonly ShownRun[],
  groups: readonly ShownGroup[],
): ChartSpec {
  const series: SeriesSpec[] = [];
  const bands: BandSpec[] = [];
  const total = perRunOrGroup(
    view,
    runs,
    groups,
    'total',
    training((s) => scaled(s.memoryBytes, MIB)),
    { width: 2.5 },
  );
  series.push(...total.series);
  bands.push(...total.bands);
  const kinds = [
    ...new Set([...runs, ...groups.flatMap((g) => g.members)].flatMap(({ s }) => [...s.memoryByKind.keys()])),
  ];
  for (const kind of kinds) {
    const part = perRunOrGroup(
      view,
      runs,
      groups,
      kind,
      training((s) => scaled(s.memoryByKind.get(kind) ?? [], MIB)),
      {
        width: 1.2,
        dash: KIND_DASH[kind] ?? [3, 3],
      },
    );
    series.push(...part.series);
  }
  const switchSteps = [...new Set(runs.flatMap(({ s }) => s.switches.map((c) => c.step)))];
  const at = (step: number) =>
    view.xAxis === 'step' ? step : runs.map(({ s }) => s.secondsAt(step)).find((t) => t !== undefined);
  const markers = switchSteps.map(at).filter((x): x is number => x !== undefined);
  return {
    yLabel: 'memory (MiB)',
    xAxis: view.xAxis,
    format: (v) => String(+v.toFixed(2)),
    formatValue: formatMiB,
    series,
    bands,
    ...(markers.length > 0 ? { markers: { label: 'block switch', x: markers } } : {}),
  };
}
