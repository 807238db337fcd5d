import uPlot from 'uplot';
import { alignCurves, type Curve } from './align-series.js';
import { type LogLine, RunSeries } from './run-series.js';

/** A run as the charts know it. */
export interface ChartRun {
  readonly id: number;
  readonly name: string;
  /** Where the run is, when it is on disk. */
  readonly dir?: string;
}

/** The colours of runs 0, 1, 2, ... (then again). */
export const RUN_COLORS = [
  '#1f77b4',
  '#d62728',
  '#2ca02c',
  '#9467bd',
  '#ff7f0e',
  '#17becf',
  '#8c564b',
  '#e377c2',
];

const KIND_DASH: Readonly<Record<string, number[]>> = {
  weights: [],
  masters: [6, 3],
  gradients: [2, 2],
  optimizer: [8, 3, 2, 3],
  optimizerState: [8, 3, 2, 3],
  activations: [1, 3],
  other: [4, 4],
};

interface SeriesSpec {
  readonly label: string;
  readonly color: string;
  readonly width?: number;
  readonly dash?: number[];
  readonly alpha?: number;
  readonly points?: boolean;
  readonly stepped?: boolean;
  readonly curve: Curve;
}

interface ChartSpec {
  readonly title: string;
  readonly id: string;
  readonly yLabel: string;
  readonly format?: (v: number) => string;
  readonly log?: boolean;
  readonly series: SeriesSpec[];
}

const formatBytes = (v: number) => `${(v / 2 ** 20).toFixed(v < 10 * 2 ** 20 ? 1 : 0)} MB`;
const formatCompact = (v: number) =>
  Math.abs(v) >= 1000
    ? `${(v / 1000).toFixed(1)}k`
    : Math.abs(v) < 0.01 && v !== 0
      ? v.toExponential(1)
      : String(+v.toFixed(3));

function withAlpha(color: string, alpha: number): string {
  const a = Math.round(alpha * 255)
    .toString(16)
    .padStart(2, '0');
  return `${color}${a}`;
}

/** One chart panel: rebuilt when its series change, otherwise only given new data. */
class ChartPanel {
  private plot: uPlot | undefined;
  private key = '';
  readonly element: HTMLElement;
  private readonly body: HTMLElement;

  constructor(parent: HTMLElement, spec: Pick<ChartSpec, 'title' | 'id'>) {
    this.element = document.createElement('section');
    this.element.className = 'panel';
    this.element.id = `chart-${spec.id}`;
    const heading = document.createElement('h2');
    heading.textContent = spec.title;
    this.body = document.createElement('div');
    this.body.className = 'chart';
    this.element.append(heading, this.body);
    parent.append(this.element);
  }

  update(spec: ChartSpec): void {
    const data = alignCurves(spec.series.map((s) => s.curve));
    const key = JSON.stringify(spec.series.map((s) => [s.label, s.color, s.points, s.stepped]));
    this.element.dataset.points = String(data[0].length);
    if (this.plot !== undefined && key === this.key) {
      this.plot.setData(data as uPlot.AlignedData);
      return;
    }
    this.plot?.destroy();
    this.key = key;
    const width = Math.max(this.body.clientWidth, 280);
    this.plot = new uPlot(
      {
        width,
        height: 220,
        legend: { show: true, live: false },
        cursor: { drag: { x: true, y: false } },
        scales: { x: { time: false }, y: spec.log ? { distr: 3 } : {} },
        axes: [
          { label: 'step', size: 36 },
          {
            label: spec.yLabel,
            size: 62,
            values: (_u, ticks) => ticks.map((t) => (spec.format ?? formatCompact)(t)),
          },
        ],
        series: [
          { label: 'step' },
          ...spec.series.map(
            (s): uPlot.Series => ({
              label: s.label,
              stroke: s.alpha !== undefined ? withAlpha(s.color, s.alpha) : s.color,
              width: s.points ? 0 : (s.width ?? 1.5),
              ...(s.dash && s.dash.length > 0 ? { dash: s.dash } : {}),
              spanGaps: true,
              ...(s.stepped ? { paths: uPlot.paths.stepped!({ align: 1 }) } : {}),
              points: s.points ? { show: true, size: 8, stroke: s.color, fill: s.color } : { show: false },
              value: (_u, v) => (v == null ? '-' : (spec.format ?? formatCompact)(v)),
            }),
          ),
        ],
      },
      data as uPlot.AlignedData,
      this.body,
    );
  }

  resize(): void {
    this.plot?.setSize({ width: Math.max(this.body.clientWidth, 280), height: 220 });
  }
}

/**
 * The board's charts for any number of runs, overlaid: loss (raw, smoothed, eval), learning rate, gradient
 * norm, tokens/s, memory by kind and BAdam's block timeline, plus a table of the runs and the list of
 * block switches. Feed it log lines as they arrive; it redraws at most once per animation frame.
 */
export class RunCharts {
  private readonly series = new Map<number, RunSeries>();
  private readonly results = new Map<number, Record<string, unknown>>();
  private readonly panels = new Map<string, ChartPanel>();
  private readonly table: HTMLTableSectionElement;
  private readonly switchList: HTMLElement;
  private readonly grid: HTMLElement;
  private scheduled = false;

  constructor(
    root: HTMLElement,
    private runs: readonly ChartRun[],
  ) {
    const table = document.createElement('table');
    table.id = 'runs';
    table.innerHTML =
      '<thead><tr><th></th><th>run</th><th>step</th><th>loss</th><th>eval loss</th><th>block</th><th>switches</th><th>results</th></tr></thead>';
    this.table = document.createElement('tbody');
    table.append(this.table);
    this.grid = document.createElement('div');
    this.grid.className = 'grid';
    const switches = document.createElement('details');
    switches.id = 'block-switches';
    switches.innerHTML = '<summary>block switches</summary>';
    this.switchList = document.createElement('ol');
    switches.append(this.switchList);
    root.append(table, this.grid, switches);
    for (const [id, title] of [
      ['loss', 'loss (raw, smoothed) and eval loss'],
      ['timeline', 'block timeline: the block trained at each step, switches marked'],
      ['lr', 'learning rate'],
      ['grad-norm', 'gradient norm'],
      ['tokens', 'tokens / s'],
      ['memory', 'memory by kind'],
    ] as const) {
      this.panels.set(id, new ChartPanel(this.grid, { id, title }));
    }
    this.setRuns(runs);
    window.addEventListener('resize', () => {
      for (const panel of this.panels.values()) panel.resize();
    });
  }

  /** Replaces the list of runs (the board's first event names them). */
  setRuns(runs: readonly ChartRun[]): void {
    this.runs = runs;
    for (const run of runs) if (!this.series.has(run.id)) this.series.set(run.id, new RunSeries());
    this.schedule();
  }

  /** New log lines of a run. */
  addLines(run: number, lines: readonly LogLine[]): void {
    this.seriesOf(run).add(lines);
    this.schedule();
  }

  /** The run's log was replaced (a fresh run in the same directory): forget its lines. */
  reset(run: number): void {
    this.series.set(run, new RunSeries());
    this.results.delete(run);
    this.schedule();
  }

  /** The run's results files. */
  setResults(run: number, results: Record<string, unknown>): void {
    this.results.set(run, results);
    this.schedule();
  }

  /** The series of a run, for pages that want more than the charts show. */
  seriesOf(run: number): RunSeries {
    let s = this.series.get(run);
    if (s === undefined) {
      s = new RunSeries();
      this.series.set(run, s);
    }
    return s;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      this.render();
    });
  }

  /** Draws everything now (also what the animation frame calls). */
  render(): void {
    const colored = this.runs.map((run, i) => ({
      run,
      color: RUN_COLORS[i % RUN_COLORS.length]!,
      s: this.seriesOf(run.id),
    }));
    const many = colored.length > 1;
    const name = (run: ChartRun, what: string) => (many ? `${run.name}: ${what}` : what);
    this.panels.get('loss')!.update({
      id: 'loss',
      title: '',
      yLabel: 'loss',
      series: colored.flatMap(({ run, color, s }) => [
        { label: name(run, 'loss'), color, alpha: 0.35, width: 1, curve: { x: s.steps, y: s.loss } },
        { label: name(run, 'smoothed'), color, width: 2.5, curve: { x: s.steps, y: s.smoothedLoss() } },
        { label: name(run, 'eval loss'), color, points: true, curve: { x: s.evalSteps, y: s.evalLoss } },
      ]),
    });
    this.panels.get('timeline')!.update({
      id: 'timeline',
      title: '',
      yLabel: 'block',
      format: (v) => (Number.isInteger(v) ? String(v) : ''),
      series: colored.flatMap(({ run, color, s }) => {
        const segments = s.timeline();
        // What the stepped line draws, readable without pixels: "block:first-last" per stretch.
        this.panels.get('timeline')!.element.dataset[`run${run.id}`] = segments
          .map((g) => `${g.block}:${g.first}-${g.last}`)
          .join(' ');
        const x = segments.flatMap((g) => [g.first, g.last]);
        const y = segments.flatMap((g) => [g.block, g.block]);
        return [
          { label: name(run, 'block'), color, width: 3, stepped: true, curve: { x, y } },
          {
            label: name(run, 'switch'),
            color,
            points: true,
            curve: { x: s.switches.map((c) => c.step), y: s.switches.map((c) => c.to) },
          },
        ];
      }),
    });
    const simple = (
      id: string,
      yLabel: string,
      pick: (s: RunSeries) => Array<number | null>,
      format?: (v: number) => string,
    ) =>
      this.panels.get(id)!.update({
        id,
        title: '',
        yLabel,
        ...(format ? { format } : {}),
        series: colored.map(({ run, color, s }) => ({
          label: run.name,
          color,
          curve: { x: s.steps, y: pick(s) },
        })),
      });
    simple('lr', 'learning rate', (s) => s.learningRate);
    simple('grad-norm', 'norm', (s) => s.gradNorm);
    simple('tokens', 'tokens/s', (s) => s.tokensPerSecond);
    this.panels.get('memory')!.update({
      id: 'memory',
      title: '',
      yLabel: 'memory',
      format: formatBytes,
      series: colored.flatMap(({ run, color, s }) => [
        { label: name(run, 'total'), color, width: 2.5, curve: { x: s.steps, y: s.memoryBytes } },
        ...[...s.memoryByKind.entries()].map(([kind, bytes]) => ({
          label: name(run, kind),
          color,
          width: 1.2,
          dash: KIND_DASH[kind] ?? [3, 3],
          curve: { x: s.steps, y: bytes },
        })),
      ]),
    });
    this.renderTable(colored);
    this.renderSwitches(colored);
  }

  private renderTable(colored: ReadonlyArray<{ run: ChartRun; color: string; s: RunSeries }>): void {
    const rows = colored.map(({ run, color, s }) => {
      const row = document.createElement('tr');
      row.id = `run-${run.id}`;
      const results = this.results.get(run.id) ?? {};
      const all = (results['all_results.json'] ?? {}) as Record<string, unknown>;
      const summary = ['train_loss', 'eval_loss', 'train_runtime', 'exact_match_after', 'peak_memory_bytes']
        .filter((k) => typeof all[k] === 'number')
        .map((k) => `${k} ${(k.endsWith('_bytes') ? formatBytes : formatCompact)(all[k] as number)}`)
        .join(' · ');
      const cells: Array<[string, string]> = [
        ['swatch', ''],
        ['name', run.name],
        ['step', `${s.lastStep}${s.totalSteps !== undefined ? ` / ${s.totalSteps}` : ''}`],
        ['loss', s.latestLoss()?.toFixed(4) ?? '-'],
        ['eval-loss', s.evalLoss.at(-1)?.toFixed(4) ?? '-'],
        ['block', s.activeBlock !== undefined ? String(s.activeBlock) : '-'],
        ['switches', String(s.switches.length)],
        ['results', summary || (s.lastStep > 0 ? 'running' : 'waiting for trainer_log.jsonl')],
      ];
      for (const [cls, text] of cells) {
        const cell = document.createElement('td');
        cell.className = cls;
        cell.textContent = text;
        if (cls === 'swatch') cell.style.background = color;
        if (cls === 'name' && run.dir !== undefined) cell.title = run.dir;
        row.append(cell);
      }
      return row;
    });
    this.table.replaceChildren(...rows);
  }

  private renderSwitches(colored: ReadonlyArray<{ run: ChartRun; color: string; s: RunSeries }>): void {
    const items = colored.flatMap(({ run, s }) =>
      s.switches.map((c) => {
        const li = document.createElement('li');
        li.dataset.run = String(run.id);
        li.dataset.step = String(c.step);
        li.textContent = `${run.name}: after step ${c.step}, block ${c.from} → ${c.to}`;
        return li;
      }),
    );
    this.switchList.replaceChildren(...items);
  }
}
