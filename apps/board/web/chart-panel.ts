import uPlot from 'uplot';
import { alignCurves, type Curve } from './align-series.js';
import { chartImage, download, type LegendEntry, seriesCsv } from './chart-export.js';
import { withAlpha } from './run-colors.js';

/** One curve of a chart. */
export interface SeriesSpec {
  /** Legend and tooltip label, e.g. `block: loss` (unique within the chart). */
  readonly label: string;
  readonly color: string;
  readonly width?: number;
  readonly dash?: readonly number[];
  readonly alpha?: number;
  /** Points only, no line (evaluations, switches). */
  readonly points?: boolean;
  /** A step line that holds each value until the next x (the block timeline). */
  readonly stepped?: boolean;
  readonly curve: Curve;
  /** The step of each point, for the tooltip when x is wall time. */
  readonly steps?: ReadonlyArray<number>;
  /** What the tooltip says about point `index` (default: its value). */
  readonly describe?: (index: number) => string;
}

/** A shaded band between two curves with the same x (a seed group's lowest and highest values). */
export interface BandSpec {
  readonly label: string;
  readonly color: string;
  readonly lower: Curve;
  readonly upper: Curve;
}

/** What a chart draws. */
export interface ChartSpec {
  readonly yLabel: string;
  /** The x axis: optimizer steps, or seconds since each run started. */
  readonly xAxis: 'step' | 'time';
  /** Axis tick labels. */
  readonly format?: (v: number) => string;
  /** Values in the tooltip. */
  readonly formatValue?: (v: number) => string;
  readonly log?: boolean;
  readonly series: readonly SeriesSpec[];
  readonly bands?: readonly BandSpec[];
  /** Vertical dashed lines at these x values (BAdam's block switches), with their legend label. */
  readonly markers?: { readonly label: string; readonly x: readonly number[] };
}

/** The grey of block-switch markers (no run is given it). */
export const MARKER_COLOR = '#7a7a7a';
const MARKER_DASH = [4, 4];
const HEIGHT = 220;
/** Tick spacings of the step axis: whole steps only. */
const STEP_INCREMENTS = Array.from({ length: 10 }, (_, e) => [1, 2, 5].map((m) => m * 10 ** e)).flat();

/** Numbers as the charts print them: short, and exact enough to read a loss off. */
export function formatValue(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(3);
  return String(Number(v.toPrecision(5)));
}

/** Axis ticks: compact. */
export function formatTick(v: number): string {
  const a = Math.abs(v);
  if (a >= 1000) return `${+(v / 1000).toFixed(1)}k`;
  if (a < 0.01 && v !== 0) return v.toExponential(1);
  return String(+v.toFixed(3));
}

/** Seconds as H:MM:SS (the wall-time axis). */
export function formatSeconds(s: number): string {
  const t = Math.max(0, Math.round(s));
  return `${Math.floor(t / 3600)}:${String(Math.floor((t % 3600) / 60)).padStart(2, '0')}:${String(t % 60).padStart(2, '0')}`;
}

/** Index of the point of `x` (ascending, with nulls) nearest to `value`, or -1. */
function nearest(x: ReadonlyArray<number | null>, value: number): number {
  let best = -1;
  let distance = Number.POSITIVE_INFINITY;
  for (let i = 0; i < x.length; i++) {
    const xi = x[i];
    if (xi === null || xi === undefined) continue;
    const d = Math.abs(xi - value);
    if (d < distance) {
      best = i;
      distance = d;
    }
  }
  return best;
}

function swatch(entry: LegendEntry): SVGSVGElement {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('width', '28');
  svg.setAttribute('height', '12');
  svg.classList.add('swatch');
  const shape =
    entry.kind === 'points'
      ? Object.assign(document.createElementNS(ns, 'circle'), {})
      : entry.kind === 'band'
        ? document.createElementNS(ns, 'rect')
        : document.createElementNS(ns, 'line');
  if (entry.kind === 'points') {
    shape.setAttribute('cx', '14');
    shape.setAttribute('cy', '6');
    shape.setAttribute('r', '4');
    shape.setAttribute('fill', entry.color);
  } else if (entry.kind === 'band') {
    for (const [k, v] of Object.entries({ x: '0', y: '1', width: '28', height: '10', fill: entry.color }))
      shape.setAttribute(k, v);
  } else {
    for (const [k, v] of Object.entries({ x1: '0', y1: '6', x2: '28', y2: '6', stroke: entry.color }))
      shape.setAttribute(k, v);
    shape.setAttribute('stroke-width', String(entry.width));
    // The dash the canvas draws, so a dashed curve has a dashed swatch.
    if (entry.dash.length > 0) shape.setAttribute('stroke-dasharray', entry.dash.join(' '));
  }
  svg.append(shape);
  return svg;
}

/**
 * One chart panel: a uPlot chart, a legend whose swatches are drawn like the curves (colour, width, dash;
 * click an entry to hide or show its curve), a tooltip with every curve's value at the cursor (run, step,
 * value), vertical markers (block switches), shaded bands, and PNG and CSV export. Rebuilt when its curves
 * change, otherwise only given new data. The plot's frame and scales are on `data-frame` (CSS pixels of the
 * canvas), so a test can find where a value is drawn.
 */
export class ChartPanel {
  private plot: uPlot | undefined;
  private key = '';
  private spec: ChartSpec | undefined;
  private data: uPlot.AlignedData = [[]];
  /** Labels of uPlot's series 1..n, in order (curves, then each band's lower and upper). */
  private labels: string[] = [];
  private readonly hidden = new Set<string>();
  readonly element: HTMLElement;
  private readonly body: HTMLElement;
  private readonly legend: HTMLElement;
  private readonly hover: HTMLElement;
  /** Where a panel puts its own controls (the loss chart's log scale). */
  readonly tools: HTMLElement;

  constructor(
    parent: HTMLElement,
    readonly id: string,
    readonly title: string,
  ) {
    this.element = document.createElement('section');
    this.element.className = 'panel';
    this.element.id = `chart-${id}`;
    const header = document.createElement('header');
    const heading = document.createElement('h2');
    heading.textContent = title;
    this.tools = document.createElement('span');
    this.tools.className = 'tools';
    const button = (text: string, what: string, act: () => void) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = `export-${text.toLowerCase()}`;
      b.textContent = text;
      b.title = what;
      b.addEventListener('click', act);
      return b;
    };
    const exports = document.createElement('span');
    exports.className = 'exports';
    exports.append(
      button('PNG', 'save this chart as a PNG image', () => void this.exportPng()),
      button('CSV', "save this chart's series as CSV", () => this.exportCsv()),
    );
    header.append(heading, this.tools, exports);
    this.body = document.createElement('div');
    this.body.className = 'chart';
    this.hover = document.createElement('div');
    this.hover.className = 'hover';
    this.hover.hidden = true;
    this.legend = document.createElement('div');
    this.legend.className = 'legend';
    this.element.append(header, this.body, this.legend);
    parent.append(this.element);
  }

  /** Shows or hides the whole panel (a chart with nothing to draw). */
  setVisible(visible: boolean): void {
    this.element.hidden = !visible;
  }

  update(spec: ChartSpec): void {
    this.spec = spec;
    const bands = spec.bands ?? [];
    const curves = [...spec.series.map((s) => s.curve), ...bands.flatMap((b) => [b.lower, b.upper])];
    this.data = alignCurves(curves) as uPlot.AlignedData;
    this.element.dataset.points = String(this.data[0].length);
    const key = JSON.stringify([
      spec.series.map((s) => [s.label, s.color, s.points, s.stepped, s.dash, s.alpha, s.width]),
      bands.map((b) => [b.label, b.color]),
      spec.markers?.label,
      spec.log,
      spec.xAxis,
      spec.yLabel,
    ]);
    if (this.plot !== undefined && key === this.key) {
      this.plot.setData(this.data);
      return;
    }
    this.key = key;
    this.build(spec);
  }

  private build(spec: ChartSpec): void {
    this.plot?.destroy();
    const bands = spec.bands ?? [];
    this.labels = [
      ...spec.series.map((s) => s.label),
      ...bands.flatMap((b) => [`${b.label} (lowest)`, `${b.label} (highest)`]),
    ];
    const curveSeries = spec.series.map(
      (s): uPlot.Series => ({
        label: s.label,
        show: !this.hidden.has(s.label),
        stroke: s.alpha !== undefined ? withAlpha(s.color, s.alpha) : s.color,
        width: s.points ? 0 : (s.width ?? 1.5),
        ...(s.dash && s.dash.length > 0 ? { dash: [...s.dash] } : {}),
        spanGaps: true,
        ...(s.stepped ? { paths: uPlot.paths.stepped!({ align: 1 }) } : {}),
        points: s.points ? { show: true, size: 8, stroke: s.color, fill: s.color } : { show: false },
      }),
    );
    const bandSeries = bands.flatMap((b): uPlot.Series[] =>
      ['lowest', 'highest'].map((edge) => ({
        label: `${b.label} (${edge})`,
        show: !this.hidden.has(b.label),
        stroke: withAlpha(b.color, 0.4),
        width: 1,
        spanGaps: true,
        points: { show: false },
      })),
    );
    const first = spec.series.length + 1;
    const format = spec.format ?? formatTick;
    this.plot = new uPlot(
      {
        width: Math.max(this.body.clientWidth, 280),
        height: HEIGHT,
        legend: { show: false },
        cursor: { drag: { x: true, y: false }, points: { show: false } },
        scales: { x: { time: false }, y: spec.log ? { distr: 3 } : {} },
        axes: [
          {
            label: spec.xAxis === 'time' ? 'wall time since the run started' : 'step',
            size: 36,
            ...(spec.xAxis === 'time'
              ? { values: (_u, ticks) => ticks.map((t) => (t == null ? '' : formatSeconds(t))) }
              : { incrs: STEP_INCREMENTS }),
          },
          // A log axis passes null for the ticks it leaves unlabelled.
          {
            label: spec.yLabel,
            size: 64,
            values: (_u, ticks) => ticks.map((t) => (t == null ? '' : format(t))),
          },
        ],
        series: [{ label: spec.xAxis }, ...curveSeries, ...bandSeries],
        bands: bands.map((b, i) => ({
          series: [first + 2 * i + 1, first + 2 * i] as uPlot.Band.Bounds,
          fill: withAlpha(b.color, 0.18),
        })),
        hooks: {
          draw: [(u) => this.drawn(u)],
          setCursor: [(u) => this.showHover(u)],
        },
      },
      this.data,
      this.body,
    );
    this.body.append(this.hover);
    this.renderLegend(spec);
  }

  /** After every draw: the markers on top, and the frame and scales for whoever reads the pixels. */
  private drawn(u: uPlot): void {
    const markers = this.spec?.markers;
    const ratio = u.ctx.canvas.width / u.ctx.canvas.clientWidth || 1;
    if (markers && !this.hidden.has(markers.label)) {
      const { ctx } = u;
      const { left, top, width, height } = u.bbox;
      ctx.save();
      ctx.beginPath();
      ctx.rect(left, top, width, height);
      ctx.clip();
      ctx.strokeStyle = MARKER_COLOR;
      ctx.lineWidth = ratio;
      ctx.setLineDash(MARKER_DASH.map((d) => d * ratio));
      for (const x of markers.x) {
        const px = Math.round(u.valToPos(x, 'x', true)) + 0.5;
        ctx.beginPath();
        ctx.moveTo(px, top);
        ctx.lineTo(px, top + height);
        ctx.stroke();
      }
      ctx.restore();
    }
    const x = u.scales.x!;
    const y = u.scales.y!;
    this.element.dataset.frame = JSON.stringify({
      left: u.bbox.left / ratio,
      top: u.bbox.top / ratio,
      width: u.bbox.width / ratio,
      height: u.bbox.height / ratio,
      x: [x.min, x.max],
      y: [y.min, y.max],
      log: this.spec?.log === true,
    });
  }

  private legendEntries(spec: ChartSpec): Array<LegendEntry & { toggles: string }> {
    return [
      ...spec.series.map((s) => ({
        label: s.label,
        toggles: s.label,
        color: s.alpha !== undefined ? withAlpha(s.color, s.alpha) : s.color,
        width: s.width ?? 1.5,
        dash: s.dash ?? [],
        kind: s.points ? ('points' as const) : ('line' as const),
      })),
      ...(spec.bands ?? []).map((b) => ({
        label: b.label,
        toggles: b.label,
        color: withAlpha(b.color, 0.3),
        width: 0,
        dash: [],
        kind: 'band' as const,
      })),
      ...(spec.markers
        ? [
            {
              label: spec.markers.label,
              toggles: spec.markers.label,
              color: MARKER_COLOR,
              width: 1,
              dash: MARKER_DASH,
              kind: 'line' as const,
            },
          ]
        : []),
    ];
  }

  private renderLegend(spec: ChartSpec): void {
    const items = this.legendEntries(spec).map((entry) => {
      const item = document.createElement('button');
      item.type = 'button';
      item.className = 'legend-item';
      item.dataset.label = entry.toggles;
      item.setAttribute('aria-pressed', String(!this.hidden.has(entry.toggles)));
      item.title = 'click to hide or show';
      const text = document.createElement('span');
      text.textContent = entry.label;
      item.append(swatch(entry), text);
      item.addEventListener('click', () => this.toggle(entry.toggles, item));
      return item;
    });
    this.legend.replaceChildren(...items);
  }

  private toggle(label: string, item: HTMLElement): void {
    const show = this.hidden.has(label);
    if (show) this.hidden.delete(label);
    else this.hidden.add(label);
    item.setAttribute('aria-pressed', String(show));
    const u = this.plot;
    if (u === undefined) return;
    this.labels.forEach((l, i) => {
      if (l === label || l === `${label} (lowest)` || l === `${label} (highest)`)
        u.setSeries(i + 1, { show });
    });
    u.redraw(false);
  }

  /** The tooltip: at the cursor's x, each shown curve's nearest point, with its run, step and value. */
  private showHover(u: uPlot): void {
    const spec = this.spec;
    const idx = u.cursor.idx;
    if (spec === undefined || idx === null || idx === undefined || (u.cursor.left ?? -1) < 0) {
      this.hover.hidden = true;
      return;
    }
    // On the step axis the cursor snaps to a logged step; on the time axis runs log at their own times,
    // so each curve's point nearest to the cursor itself is shown.
    const x = spec.xAxis === 'step' ? u.data[0][idx]! : u.posToVal(u.cursor.left ?? 0, 'x');
    const reach = spec.xAxis === 'step' ? 12 : 24;
    const rows: HTMLElement[] = [];
    const formatY = spec.formatValue ?? formatValue;
    for (const s of spec.series) {
      if (this.hidden.has(s.label)) continue;
      const i = nearest(s.curve.x, x);
      const y = i < 0 ? null : s.curve.y[i];
      if (y === null || y === undefined) continue;
      // Only a point near the cursor (a curve that has no point there says nothing).
      if (Math.abs(u.valToPos(s.curve.x[i]!, 'x') - u.valToPos(x, 'x')) > reach) continue;
      const row = document.createElement('div');
      row.className = 'hover-row';
      row.dataset.label = s.label;
      const step = s.steps?.[i] ?? (spec.xAxis === 'step' ? s.curve.x[i] : undefined);
      if (step !== undefined && step !== null) row.dataset.step = String(step);
      const mark = document.createElement('i');
      mark.style.background = s.color;
      const value = document.createElement('b');
      value.textContent = s.describe ? s.describe(i) : formatY(y);
      row.append(mark, `${s.label} `, value);
      if (step !== undefined && step !== null && (spec.xAxis === 'time' || step !== x))
        row.append(` (step ${step})`);
      rows.push(row);
    }
    if (rows.length === 0) {
      this.hover.hidden = true;
      return;
    }
    const head = document.createElement('div');
    head.className = 'hover-x';
    head.textContent = spec.xAxis === 'time' ? `wall time ${formatSeconds(x)}` : `step ${x}`;
    this.hover.dataset.x = String(x);
    this.hover.replaceChildren(head, ...rows);
    this.hover.hidden = false;
    const left = (u.cursor.left ?? 0) + u.bbox.left / (u.ctx.canvas.width / u.ctx.canvas.clientWidth || 1);
    const flip = left > this.body.clientWidth / 2;
    this.hover.style.left = flip ? '' : `${left + 14}px`;
    this.hover.style.right = flip ? `${this.body.clientWidth - left + 14}px` : '';
  }

  /** The series as CSV (x, then each curve and band edge), downloaded as `<chart>.csv`. */
  csv(): string {
    return seriesCsv(
      this.spec?.xAxis === 'time' ? 'wall_time_seconds' : 'step',
      this.labels,
      this.data as unknown as [number[], ...Array<Array<number | null>>],
    );
  }

  private exportCsv(): void {
    download(`${this.id}.csv`, new Blob([this.csv()], { type: 'text/csv' }));
  }

  private async exportPng(): Promise<void> {
    if (this.plot === undefined || this.spec === undefined) return;
    const entries = this.legendEntries(this.spec).filter((e) => !this.hidden.has(e.toggles));
    download(`${this.id}.png`, await chartImage(this.title, this.plot.ctx.canvas, entries));
  }

  resize(): void {
    this.plot?.setSize({ width: Math.max(this.body.clientWidth, 280), height: HEIGHT });
  }
}
