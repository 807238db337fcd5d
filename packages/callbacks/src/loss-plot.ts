import { join } from 'node:path';
import { type LogEntry, smoothSeries, type TrainerCallback, type TrainerContext } from '@badam/core';
import { writeFileAtomic } from '@badam/safetensors';
import { createCanvas } from '@napi-rs/canvas';
import {
  Chart,
  type ChartDataset,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  type Plugin,
  PointElement,
  Title,
} from 'chart.js';

Chart.register(LineController, LineElement, PointElement, LinearScale, Legend, Title);

/** One curve of a loss plot. */
export interface LossSeries {
  readonly label: string;
  /** Draw a smoothed copy too (when long enough). Default true. */
  readonly smooth?: boolean;
  readonly points: ReadonlyArray<{ readonly step: number; readonly value: number }>;
}

/** Options of {@link renderLossPlot}. */
export interface LossPlotOptions {
  title?: string;
  width?: number;
  height?: number;
  /** Add an exponentially smoothed copy of each series with this many points or more. Default 5. */
  smoothFrom?: number;
  /** y axis label. Default `loss`. */
  yLabel?: string;
  /** Steps to mark with a vertical dashed line: BAdam's block switches. */
  markers?: readonly number[];
  /** Legend label of the markers. Default `block switch`. */
  markerLabel?: string;
}

/**
 * Matplotlib's tab10, in pairs: a series' raw curve takes the first colour of its pair, its smoothed curve
 * the second, so the two read apart (and apart from other series) without relying on transparency.
 */
const COLORS = [
  '#1f77b4',
  '#ff7f0e',
  '#2ca02c',
  '#d62728',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#17becf',
  '#bcbd22',
  '#7f7f7f',
];

/** The markers' colour: a grey no series uses. */
export const MARKER_COLOR = '#808080';

/** Paints the canvas white under a chart (a PNG is transparent otherwise). */
const whiteBackground: Plugin<'line'> = {
  id: 'whiteBackground',
  beforeDraw(chart) {
    const { ctx, width, height } = chart;
    ctx.save();
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(0, 0, width, height);
    ctx.restore();
  },
};

/** A line chart's curves. */
export type LossPlotDataset = ChartDataset<'line', Array<{ x: number; y: number }>>;

/**
 * The curves of a loss plot: each series raw and, from `smoothFrom` points, smoothed, in two distinct
 * colours (raw thin and half transparent, smoothed solid); with markers, an empty dashed grey curve that
 * gives them their legend entry.
 */
export function lossPlotDatasets(
  series: readonly LossSeries[],
  options: Pick<LossPlotOptions, 'smoothFrom' | 'markers' | 'markerLabel'> = {},
): LossPlotDataset[] {
  const { smoothFrom = 5 } = options;
  const datasets: LossPlotDataset[] = [];
  series.forEach((s, i) => {
    const rawColor = COLORS[(2 * i) % COLORS.length]!;
    const smoothColor = COLORS[(2 * i + 1) % COLORS.length]!;
    const raw = s.points.map((p) => ({ x: p.step, y: p.value }));
    const smooth = (s.smooth ?? true) && s.points.length >= smoothFrom;
    datasets.push({
      label: smooth ? `${s.label} (raw)` : s.label,
      data: raw,
      borderColor: smooth ? `${rawColor}99` : rawColor,
      backgroundColor: rawColor,
      borderWidth: smooth ? 1 : 2,
      pointRadius: s.points.length > 60 ? 0 : 2,
    });
    if (smooth) {
      const values = smoothSeries(s.points.map((p) => p.value));
      datasets.push({
        label: `${s.label} (smoothed)`,
        data: s.points.map((p, j) => ({ x: p.step, y: values[j]! })),
        borderColor: smoothColor,
        backgroundColor: smoothColor,
        borderWidth: 2,
        pointRadius: 0,
      });
    }
  });
  if ((options.markers?.length ?? 0) > 0) {
    datasets.push({
      label: options.markerLabel ?? 'block switch',
      data: [],
      borderColor: MARKER_COLOR,
      backgroundColor: MARKER_COLOR,
      borderDash: [6, 4],
      borderWidth: 1,
      pointRadius: 0,
    });
  }
  return datasets;
}

/** Draws a vertical dashed line at each marker step, under the curves. */
function markerLines(steps: readonly number[]): Plugin<'line'> {
  return {
    id: 'markerLines',
    beforeDatasetsDraw(chart) {
      const { ctx, chartArea, scales } = chart;
      const x = scales.x;
      if (x === undefined) return;
      ctx.save();
      ctx.strokeStyle = MARKER_COLOR;
      ctx.lineWidth = 1;
      ctx.setLineDash([6, 4]);
      for (const step of steps) {
        // Half a pixel off the grid: a one-pixel line lands on whole pixels, in the marker's own colour.
        const px = Math.round(x.getPixelForValue(step)) + 0.5;
        if (px < chartArea.left || px > chartArea.right) continue;
        ctx.beginPath();
        ctx.moveTo(px, chartArea.top);
        ctx.lineTo(px, chartArea.bottom);
        ctx.stroke();
      }
      ctx.restore();
    },
  };
}

/**
 * Renders loss curves to a PNG with Chart.js on a Skia canvas (@napi-rs/canvas): each series raw and, from
 * `smoothFrom` points, smoothed, in distinct colours ({@link lossPlotDatasets}); `markers` (BAdam's block
 * switches) as vertical dashed lines. Returns the PNG bytes.
 */
export async function renderLossPlot(
  series: readonly LossSeries[],
  options: LossPlotOptions = {},
): Promise<Uint8Array> {
  const { title = 'training loss', width = 900, height = 540, yLabel = 'loss' } = options;
  return renderLineChart(lossPlotDatasets(series, options), {
    title,
    yLabel,
    width,
    height,
    plugins: [markerLines(options.markers ?? [])],
  });
}

/** How {@link renderLineChart} frames its curves. */
export interface LineChartFrame {
  readonly title: string;
  readonly yLabel: string;
  readonly width: number;
  readonly height: number;
  /** Legend entries to show (default all). */
  readonly legendFilter?: (label: string) => boolean;
  /** Drawing plugins besides the white background. */
  readonly plugins?: ReadonlyArray<Plugin<'line'>>;
}

/**
 * A PNG of line datasets against the step, on a white background: the one chart layout every plot of this
 * package uses (Chart.js on a Skia canvas).
 */
export async function renderLineChart(
  datasets: ReadonlyArray<ChartDataset<'line', Array<{ x: number; y: number }>>>,
  frame: LineChartFrame,
): Promise<Uint8Array> {
  const canvas = createCanvas(frame.width, frame.height);
  const legendFilter = frame.legendFilter;
  // Chart.js draws on any 2D context; Skia's has the same API as the browser's.
  const chart = new Chart<'line', Array<{ x: number; y: number }>>(canvas.getContext('2d') as never, {
    type: 'line',
    data: { datasets: [...datasets] },
    options: {
      animation: false,
      responsive: false,
      parsing: false,
      devicePixelRatio: 1,
      scales: {
        x: { type: 'linear', title: { display: true, text: 'step' } },
        y: { type: 'linear', title: { display: true, text: frame.yLabel } },
      },
      plugins: {
        title: { display: true, text: frame.title },
        legend: {
          position: 'top',
          ...(legendFilter !== undefined ? { labels: { filter: (item) => legendFilter(item.text) } } : {}),
        },
      },
    },
    plugins: [whiteBackground, ...(frame.plugins ?? [])],
  });
  try {
    return await canvas.encode('png');
  } finally {
    chart.destroy();
  }
}

/** The training and eval loss curves of a log history. */
export function lossSeriesOf(history: readonly LogEntry[]): LossSeries[] {
  const train = history.filter((e) => e.loss !== undefined).map((e) => ({ step: e.step, value: e.loss! }));
  const evaluation = history
    .filter((e) => e.eval_loss !== undefined)
    .map((e) => ({ step: e.step, value: e.eval_loss! }));
  return [
    { label: 'train loss', points: train },
    ...(evaluation.length > 0 ? [{ label: 'eval loss', points: evaluation, smooth: false }] : []),
  ];
}

/**
 * Plots LLaMA-Factory's loss images into the output directory at the end of training, and every
 * `everySteps` steps if set: `training_loss.png` (train loss raw and smoothed, eval loss when present) and,
 * once there are evaluations, `training_eval_loss.png`; both mark BAdam's block switches, which it records
 * as they happen (and keeps in checkpoints, so a resumed run's plot has them all).
 * {@link LossPlotCallback.plot} draws on request.
 */
export class LossPlotCallback implements TrainerCallback {
  readonly path: string;
  readonly evalPath: string;
  readonly stateKey = 'loss_plot';
  private readonly everySteps: number | undefined;
  private switches: number[] = [];

  constructor(options: { outputDir: string; everySteps?: number; fileName?: string }) {
    this.path = join(options.outputDir, options.fileName ?? 'training_loss.png');
    this.evalPath = this.path.replace(/_loss\.png$|\.png$/, (m) =>
      m === '_loss.png' ? '_eval_loss.png' : '_eval.png',
    );
    this.everySteps = options.everySteps;
  }

  saveState(): unknown {
    return { blockSwitches: this.switches };
  }

  loadState(state: unknown): void {
    const switches = (state as { blockSwitches?: unknown } | null)?.blockSwitches;
    this.switches = Array.isArray(switches) ? switches.filter((s): s is number => typeof s === 'number') : [];
  }

  /** Writes the plots of `history` now (atomically); returns the files written. */
  async plot(history: readonly LogEntry[]): Promise<string[]> {
    const series = lossSeriesOf(history);
    const markers = { markers: this.switches };
    await writeFileAtomic(this.path, [await renderLossPlot(series, markers)]);
    const evaluation = series.find((s) => s.label === 'eval loss');
    if (evaluation === undefined) return [this.path];
    const png = await renderLossPlot([evaluation], { ...markers, title: 'eval loss', yLabel: 'eval loss' });
    await writeFileAtomic(this.evalPath, [png]);
    return [this.path, this.evalPath];
  }

  onTrainBegin(context: TrainerContext): void {
    // A resumed run keeps the switches before its checkpoint only (loadState gave them).
    this.switches = this.switches.filter((step) => step <= context.progress.step);
  }

  onBlockSwitch(context: TrainerContext): void {
    this.switches.push(context.progress.step);
  }

  async onLog(context: TrainerContext, entry: LogEntry): Promise<void> {
    if (this.everySteps !== undefined && entry.loss !== undefined && entry.step % this.everySteps === 0) {
      await this.plot(context.state.logHistory);
    }
  }

  async onTrainEnd(context: TrainerContext): Promise<void> {
    if (context.state.logHistory.some((e) => e.loss !== undefined)) await this.plot(context.state.logHistory);
  }
}
