import { ChartPanel } from './chart-panel.js';
import {
  type ChartRun,
  type ChartView,
  evalSpec,
  lossSpec,
  memorySpec,
  quantitySpec,
  type ShownGroup,
  type ShownRun,
  timelineSpec,
} from './chart-specs.js';
import { comparisonSections, imageFigure, type OutputImage, type PageComparison } from './outputs-view.js';
import { runColor } from './run-colors.js';
import { type LogLine, RunSeries } from './run-series.js';
import { COLUMNS, matchesFilter, rowCells } from './run-table.js';

export type { ChartRun } from './chart-specs.js';
export { runColor } from './run-colors.js';

/** The panels, in order: [id, title]. */
const PANELS: ReadonlyArray<[string, string]> = [
  ['loss', 'loss (raw, smoothed) and eval loss'],
  ['timeline', 'block timeline: the block trained at each step, switches marked'],
  ['eval', 'evaluation scores'],
  ['lr', 'learning rate'],
  ['grad-norm', 'gradient norm'],
  ['tokens', 'tokens / s'],
  ['memory', 'memory held between steps, by kind (MiB); block switches dashed grey'],
];

function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Readonly<Record<string, string | boolean>> = {},
): HTMLElementTagNameMap[K] {
  return Object.assign(document.createElement(tag), props);
}

/**
 * The board's charts for any number of runs: loss (raw, smoothed, eval; log scale on demand), evaluation
 * scores, BAdam's block timeline, learning rate, gradient norm, tokens/s and memory by kind in MiB with the
 * block switches marked; every chart with values on hover, a legend to hide curves, and PNG and CSV
 * export. A toolbar sets the smoothing, the x axis (step or wall time), the grouping of a comparison's
 * seeds (mean and band per method) and filters the runs; the runs table shows and hides them and says
 * where each stands. Below: notes about what could not be read, the block switches, the comparisons'
 * summary tables and plots, and each run's own images. Feed it log lines as they arrive; it redraws at most
 * once per animation frame.
 */
export class RunCharts {
  private readonly series = new Map<number, RunSeries>();
  private readonly results = new Map<number, Record<string, unknown>>();
  private readonly images = new Map<number, readonly OutputImage[]>();
  private readonly notes = new Map<number, string[]>();
  private readonly comparisons = new Map<number, PageComparison>();
  private readonly panels = new Map<string, ChartPanel>();
  private readonly hiddenRuns = new Set<number>();
  private readonly table: HTMLTableSectionElement;
  private readonly notesList: HTMLElement;
  private readonly switchList: HTMLElement;
  private readonly comparisonsView: HTMLElement;
  private readonly imagesView: HTMLElement;
  private readonly grid: HTMLElement;
  private readonly controls: {
    smoothing: HTMLInputElement;
    smoothingValue: HTMLElement;
    xAxis: HTMLSelectElement;
    group: HTMLInputElement;
    groupLabel: HTMLElement;
    filter: HTMLInputElement;
    logLoss: HTMLInputElement;
  };
  private smoothing: number | undefined;
  /** What the image sections were last built from. */
  private readonly drawnKeys = { comparisons: '', images: '' };
  private stopped: string | undefined;
  private scheduled = false;

  constructor(
    root: HTMLElement,
    private runs: readonly ChartRun[],
  ) {
    const toolbar = element('div', { className: 'toolbar', id: 'toolbar' });
    const smoothing = element('input', {
      type: 'range',
      id: 'smoothing',
      min: '0',
      max: '0.99',
      step: '0.01',
      value: '0.6',
    });
    const smoothingValue = element('span', { id: 'smoothing-value', textContent: 'auto' });
    const auto = element('button', { type: 'button', id: 'smoothing-auto', textContent: 'auto' });
    auto.title = "LLaMA-Factory's weight, from the curve's length (training_loss.png uses it)";
    const xAxis = element('select', { id: 'x-axis' });
    xAxis.append(
      element('option', { value: 'step', textContent: 'step' }),
      element('option', { value: 'time', textContent: 'wall time' }),
    );
    const group = element('input', { type: 'checkbox', id: 'group-seeds', checked: true });
    const groupLabel = element('label', { className: 'group' });
    groupLabel.append(group, " group a comparison's seeds: mean and band per method");
    const filter = element('input', {
      type: 'search',
      id: 'run-filter',
      placeholder: 'filter runs by name (regular expression)',
    });
    const showAll = element('button', { type: 'button', id: 'show-all', textContent: 'show all' });
    const hideAll = element('button', { type: 'button', id: 'hide-all', textContent: 'hide all' });
    const smoothingLabel = element('label', { textContent: 'smoothing ' });
    smoothingLabel.append(smoothing, ' ', smoothingValue, ' ', auto);
    const axisLabel = element('label', { textContent: 'x axis ' });
    axisLabel.append(xAxis);
    toolbar.append(smoothingLabel, axisLabel, groupLabel, filter, showAll, hideAll);

    const table = element('table', { id: 'runs' });
    const head = table.createTHead().insertRow();
    for (const [cls, text, tip] of COLUMNS)
      head.append(element('th', { className: cls, textContent: text, title: tip }));
    this.table = table.createTBody();
    this.notesList = element('ul', { id: 'notes' });
    this.grid = element('div', { className: 'grid' });
    const switches = element('details', { id: 'block-switches' });
    switches.append(element('summary', { textContent: 'block switches' }));
    this.switchList = element('ol');
    switches.append(this.switchList);
    this.comparisonsView = element('div', { id: 'comparisons' });
    this.imagesView = element('div', { id: 'images' });
    root.append(toolbar, table, this.notesList, this.grid, switches, this.comparisonsView, this.imagesView);
    for (const [id, title] of PANELS) this.panels.set(id, new ChartPanel(this.grid, id, title));
    const logLoss = element('input', { type: 'checkbox', id: 'log-loss' });
    const logLabel = element('label', { textContent: ' log scale' });
    logLabel.prepend(logLoss);
    this.panels.get('loss')!.tools.append(logLabel);
    this.controls = { smoothing, smoothingValue, xAxis, group, groupLabel, filter, logLoss };

    smoothing.addEventListener('input', () => {
      this.smoothing = Number(smoothing.value);
      smoothingValue.textContent = smoothing.value;
      this.schedule();
    });
    auto.addEventListener('click', () => {
      this.smoothing = undefined;
      smoothingValue.textContent = 'auto';
      this.schedule();
    });
    for (const input of [xAxis, group, logLoss]) input.addEventListener('change', () => this.schedule());
    filter.addEventListener('input', () => this.schedule());
    showAll.addEventListener('click', () => {
      this.hiddenRuns.clear();
      this.schedule();
    });
    hideAll.addEventListener('click', () => {
      for (const run of this.runs) this.hiddenRuns.add(run.id);
      this.schedule();
    });
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

  /** The run's log was replaced (a fresh run in the same directory): forget what it showed. */
  reset(run: number): void {
    this.series.set(run, new RunSeries());
    this.results.delete(run);
    this.images.delete(run);
    this.notes.delete(run);
    this.schedule();
  }

  /** The run's results files. */
  setResults(run: number, results: Record<string, unknown>): void {
    this.results.set(run, results);
    this.schedule();
  }

  /** The images in the run's directory (training_loss.png, ...). */
  setImages(run: number, images: readonly OutputImage[]): void {
    this.images.set(run, images);
    this.schedule();
  }

  /** Something about the run that could not be read (a skipped log line, a permission denied). */
  addNote(run: number, message: string): void {
    const notes = this.notes.get(run) ?? [];
    notes.push(message);
    this.notes.set(run, notes);
    this.schedule();
  }

  /** A comparison the board shows (named by the runs event), or its new table and images. */
  setComparison(comparison: {
    id: number;
    name?: string;
    dir?: string;
    table?: string;
    images?: readonly OutputImage[];
  }): void {
    const known = this.comparisons.get(comparison.id);
    const dir = comparison.dir ?? known?.dir;
    const table = comparison.table ?? known?.table;
    this.comparisons.set(comparison.id, {
      id: comparison.id,
      name: comparison.name ?? known?.name ?? `comparison ${comparison.id}`,
      ...(dir !== undefined ? { dir } : {}),
      ...(table !== undefined ? { table } : {}),
      images: comparison.images ?? known?.images ?? [],
    });
    this.schedule();
  }

  /** The board stopped (its process ended): every run still running says where it stopped. */
  stop(message: string): void {
    this.stopped = message;
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

  /** The runs shown, and the groups their seeds form when grouping is on (a group of one stays a run). */
  private shown(): { all: ShownRun[]; runs: ShownRun[]; groups: ShownGroup[]; colorOf: Map<number, string> } {
    const filter = this.controls.filter.value;
    const all = this.runs.map((run, i) => ({ run, color: runColor(i), s: this.seriesOf(run.id) }));
    const visible = all.filter(({ run }) => !this.hiddenRuns.has(run.id) && matchesFilter(run.name, filter));
    const grouping = this.controls.group.checked && this.controls.xAxis.value === 'step';
    const byGroup = new Map<string, ShownRun[]>();
    for (const entry of visible) {
      if (!grouping || entry.run.group === undefined) continue;
      const key = `${entry.run.comparison ?? ''}\u0000${entry.run.group}`;
      byGroup.set(key, [...(byGroup.get(key) ?? []), entry]);
    }
    const groups = [...byGroup.values()]
      .filter((members) => members.length > 1)
      .map((members) => ({ label: members[0]!.run.group!, color: members[0]!.color, members }));
    const grouped = new Set(groups.flatMap((g) => g.members.map((m) => m.run.id)));
    const colorOf = new Map(all.map((e) => [e.run.id, e.color]));
    for (const g of groups) for (const m of g.members) colorOf.set(m.run.id, g.color);
    return { all, runs: visible.filter((e) => !grouped.has(e.run.id)), groups, colorOf };
  }

  /** Draws everything now (also what the animation frame calls). */
  render(): void {
    const { all, runs, groups, colorOf } = this.shown();
    this.controls.groupLabel.hidden = !this.runs.some((r) => r.group !== undefined);
    const view: ChartView = {
      xAxis: this.controls.xAxis.value === 'time' ? 'time' : 'step',
      smoothing: this.smoothing,
      logLoss: this.controls.logLoss.checked,
      many: runs.length + groups.length > 1 || this.runs.length > 1,
    };
    const panel = (id: string) => this.panels.get(id)!;
    panel('loss').update(lossSpec(view, runs, groups));
    const timelineRuns = [...runs, ...groups.flatMap((g) => g.members)];
    panel('timeline').update(timelineSpec(view, timelineRuns));
    // The stretches as text ("block:first-last" each), beside the drawing, for pages that read them.
    for (const { run, s } of timelineRuns) {
      panel('timeline').element.dataset[`run${run.id}`] = s
        .timeline()
        .map((g) => `${g.block}:${g.first}-${g.last}`)
        .join(' ');
    }
    panel('timeline').setVisible(timelineRuns.some(({ s }) => s.firstBlock !== undefined));
    const scores = evalSpec(view, runs, groups);
    panel('eval').setVisible(scores.series.length > 0);
    if (scores.series.length > 0) panel('eval').update(scores);
    panel('lr').update(quantitySpec(view, runs, groups, 'learning rate', (s) => s.learningRate));
    panel('grad-norm').update(quantitySpec(view, runs, groups, 'gradient norm', (s) => s.gradNorm));
    panel('tokens').update(quantitySpec(view, runs, groups, 'tokens/s', (s) => s.tokensPerSecond));
    panel('memory').update(memorySpec(view, runs, groups));
    this.renderTable(all, colorOf);
    this.renderNotes();
    this.renderSwitches(all);
    // Images are rebuilt only when they change: a new <img> is a new download.
    const comparisons = [...this.comparisons.values()];
    const comparisonsKey = JSON.stringify(comparisons);
    if (comparisonsKey !== this.drawnKeys.comparisons) {
      this.drawnKeys.comparisons = comparisonsKey;
      this.comparisonsView.replaceChildren(...comparisonSections(comparisons));
    }
    this.renderImages(all);
  }

  private renderTable(all: readonly ShownRun[], colorOf: ReadonlyMap<number, string>): void {
    const filter = this.controls.filter.value;
    const rows = all.map(({ run, s }) => {
      const row = element('tr', { id: `run-${run.id}` });
      const matches = matchesFilter(run.name, filter);
      const shown = !this.hiddenRuns.has(run.id);
      row.hidden = !matches;
      row.classList.toggle('off', !shown);
      const cells = rowCells(
        {
          run,
          color: colorOf.get(run.id)!,
          s,
          results: this.results.get(run.id) ?? {},
          shown,
          matches,
          notes: this.notes.get(run.id)?.length ?? 0,
        },
        this.stopped !== undefined,
      );
      for (const [cls, text] of cells) {
        const cell = element('td', { className: cls, textContent: text });
        if (cls === 'show') {
          const box = element('input', { type: 'checkbox', checked: shown, title: `show ${run.name}` });
          box.addEventListener('change', () => {
            if (box.checked) this.hiddenRuns.delete(run.id);
            else this.hiddenRuns.add(run.id);
            this.schedule();
          });
          const mark = element('span', { className: 'swatch' });
          mark.style.background = colorOf.get(run.id)!;
          cell.append(box, mark);
        }
        if (cls === 'name' && run.dir !== undefined) cell.title = run.dir;
        row.append(cell);
      }
      return row;
    });
    this.table.replaceChildren(...rows);
  }

  private renderNotes(): void {
    const items = this.runs.flatMap((run) =>
      (this.notes.get(run.id) ?? []).map((message) => {
        const li = element('li', { textContent: `${run.name}: ${message}` });
        li.dataset.run = String(run.id);
        return li;
      }),
    );
    if (this.stopped !== undefined)
      items.unshift(element('li', { className: 'stopped', textContent: this.stopped }));
    this.notesList.replaceChildren(...items);
  }

  private renderSwitches(all: readonly ShownRun[]): void {
    const items = all.flatMap(({ run, s }) =>
      s.switches.map((c) => {
        const li = element('li', {
          textContent: `${run.name}: after step ${c.step}, block ${c.from} → ${c.to}`,
        });
        li.dataset.run = String(run.id);
        li.dataset.step = String(c.step);
        return li;
      }),
    );
    this.switchList.replaceChildren(...items);
  }

  private renderImages(all: readonly ShownRun[]): void {
    const withImages = all.filter(
      ({ run }) => (this.images.get(run.id)?.length ?? 0) > 0 && !this.hiddenRuns.has(run.id),
    );
    const key = JSON.stringify(withImages.map(({ run }) => [run.id, run.name, this.images.get(run.id)]));
    if (key === this.drawnKeys.images) return;
    this.drawnKeys.images = key;
    const sections = withImages.map(({ run }) => {
      const details = element('details', { open: true, className: 'run-images' });
      details.id = `images-${run.id}`;
      details.append(element('summary', { textContent: `${run.name}: images` }));
      const figures = element('div', { className: 'figures' });
      figures.append(
        ...this.images
          .get(run.id)!
          .map((i) =>
            imageFigure(`/runs/${run.id}/${encodeURIComponent(i.name)}`, `${run.name}: ${i.name}`, i.mtimeMs),
          ),
      );
      details.append(figures);
      return details;
    });
    this.imagesView.replaceChildren(...sections);
  }
}
