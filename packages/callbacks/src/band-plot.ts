import { writeFileAtomic } from '@badam/safetensors';
import { Chart, Filler } from 'chart.js';
import { renderLineChart } from './loss-plot.js';

// The band is the area between two curves: Chart.js's filler draws it.
Chart.register(Filler);

/** One step of a {@link BandSeries}: the centre line and the band's two edges. */
export interface BandPoint {
  readonly step: number;
  readonly mean: number;
  readonly low: number;
  readonly high: number;
}

/** One curve with a band around it (e.g. the mean loss of several seeds, between their min and max). */
export interface BandSeries {
  readonly label: string;
  readonly points: readonly BandPoint[];
}

/** Options of {@link renderBandPlot}. */
export interface BandPlotOptions {
  title?: string;
  /** What the band is, for the legend (e.g. `min-max over 3 seeds`). */
  bandLabel?: string;
  yLabel?: string;
  width?: number;
  height?: number;
}

/** Matplotlib's tab10: one colour per series, the band in the same colour, mostly transparent. */
const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#17becf'];

/**
 * Several curves of the same steps into one band per step: the mean of the curves and their min and max.
 * Steps missing from any curve are left out, so every point of the band has all curves behind it.
 *
 * @example
 * ```ts
 * bandOf([[{ step: 1, value: 2 }], [{ step: 1, value: 4 }]]); // [{ step: 1, mean: 3, low: 2, high: 4 }]
 * ```
 */
export function bandOf(
  curves: ReadonlyArray<ReadonlyArray<{ readonly step: number; readonly value: number }>>,
): BandPoint[] {
  if (curves.length === 0) return [];
  const byStep = curves.map((c) => new Map(c.map((p) => [p.step, p.value])));
  return curves[0]!
    .map((p) => p.step)
    .filter((step) => byStep.every((m) => m.has(step)))
    .map((step) => {
      const values = byStep.map((m) => m.get(step)!);
      return {
        step,
        mean: values.reduce((a, b) => a + b, 0) / values.length,
        low: Math.min(...values),
        high: Math.max(...values),
      };
    });
}

/**
 * Renders curves with bands to a PNG (Chart.js on a Skia canvas, as `renderLossPlot` does): each series'
 * centre line solid, its band filled between its low and high edges in the same colour. Returns the PNG bytes.
 */
export async function renderBandPlot(
  series: readonly BandSeries[],
  options: BandPlotOptions = {},
): Promise<Uint8Array> {
  const { title = 'training loss', yLabel = 'loss', width = 900, height = 540, bandLabel = 'band' } = options;
  const datasets = series.flatMap((s, i) => {
    const color = COLORS[i % COLORS.length]!;
    const edge = (key: 'low' | 'high') => ({
      label: `${s.label} ${bandLabel} (${key})`,
      data: s.points.map((p) => ({ x: p.step, y: p[key] })),
      borderColor: `${color}00`,
      backgroundColor: `${color}33`,
      borderWidth: 0,
      pointRadius: 0,
      // The high edge fills down to the low edge just before it.
      fill: key === 'high' ? ('-1' as const) : false,
    });
    return [
      edge('low'),
      edge('high'),
      {
        label: `${s.label} (mean; band: ${bandLabel})`,
        data: s.points.map((p) => ({ x: p.step, y: p.mean })),
        borderColor: color,
        backgroundColor: color,
        borderWidth: 2,
        pointRadius: s.points.length > 60 ? 0 : 2,
        fill: false,
      },
    ];
  });
  return renderLineChart(datasets, {
    title,
    yLabel,
    width,
    height,
    // The edges are the band, not curves of their own: only the centre lines get a legend entry.
    legendFilter: (label) => label.includes('(mean'),
  });
}

/** {@link renderBandPlot} written atomically to `path`. */
export async function writeBandPlot(
  path: string,
  series: readonly BandSeries[],
  options: BandPlotOptions = {},
): Promise<void> {
  await writeFileAtomic(path, [await renderBandPlot(series, options)]);
}
