import { join } from 'node:path';
import type { LogEntry, TrainerCallback, TrainerContext } from '@badam/core';
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
}

const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b'];

/**
 * LLaMA-Factory's smoothing: an exponential moving average whose weight grows with the series length
 * (`1.8 * (sigmoid(0.05 n) - 0.5)`), so short curves are barely smoothed and long ones a lot.
 */
export function smoothSeries(values: readonly number[]): number[] {
  if (values.length === 0) return [];
  const weight = 1.8 * (1 / (1 + Math.exp(-0.05 * values.length)) - 0.5);
  let last = values[0]!;
  return values.map((v) => {
    last = last * weight + (1 - weight) * v;
    return last;
  });
}

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

/**
 * Renders loss curves to a PNG with Chart.js on a Skia canvas (@napi-rs/canvas): each series raw (light)
 * and, from `smoothFrom` points, smoothed (solid). Returns the PNG bytes.
 */
export async function renderLossPlot(
  series: readonly LossSeries[],
  options: LossPlotOptions = {},
): Promise<Uint8Array> {
  const { title = 'training loss', width = 900, height = 540, smoothFrom = 5, yLabel = 'loss' } = options;
  const canvas = createCanvas(width, height);
  const datasets: ChartDataset<'line', Array<{ x: number; y: number }>>[] = [];
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length]!;
    const raw = s.points.map((p) => ({ x: p.step, y: p.value }));
    const smooth = (s.smooth ?? true) && s.points.length >= smoothFrom;
    datasets.push({
      label: smooth ? `${s.label} (raw)` : s.label,
      data: raw,
      borderColor: smooth ? `${color}55` : color,
      backgroundColor: color,
      borderWidth: smooth ? 1 : 2,
      pointRadius: s.points.length > 60 ? 0 : 2,
    });
    if (smooth) {
      const values = smoothSeries(s.points.map((p) => p.value));
      datasets.push({
        label: `${s.label} (smoothed)`,
        data: s.points.map((p, j) => ({ x: p.step, y: values[j]! })),
        borderColor: color,
        backgroundColor: color,
        borderWidth: 2,
        pointRadius: 0,
      });
    }
  });
  // Chart.js draws on any 2D context; Skia's has the same API as the browser's.
  const chart = new Chart<'line', Array<{ x: number; y: number }>>(canvas.getContext('2d') as never, {
    type: 'line',
    data: { datasets },
    options: {
      animation: false,
      responsive: false,
      parsing: false,
      devicePixelRatio: 1,
      scales: {
        x: { type: 'linear', title: { display: true, text: 'step' } },
        y: { type: 'linear', title: { display: true, text: yLabel } },
      },
      plugins: { title: { display: true, text: title }, legend: { position: 'top' } },
    },
    plugins: [whiteBackground],
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
 * Plots `training_loss.png` (train loss, smoothed, and eval loss when present) into the output directory at
 * the end of training, and every `everySteps` steps if set; {@link LossPlotCallback.plot} draws on request.
 */
export class LossPlotCallback implements TrainerCallback {
  readonly path: string;
  private readonly everySteps: number | undefined;

  constructor(options: { outputDir: string; everySteps?: number; fileName?: string }) {
    this.path = join(options.outputDir, options.fileName ?? 'training_loss.png');
    this.everySteps = options.everySteps;
  }

  /** Writes the plot of `history` now (atomically). */
  async plot(history: readonly LogEntry[]): Promise<string> {
    const png = await renderLossPlot(lossSeriesOf(history));
    await writeFileAtomic(this.path, [png]);
    return this.path;
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
