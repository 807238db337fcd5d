/** Lets the browser save `blob` as `name` (a download). */
export function download(name: string, blob: Blob): void {
  const link = document.createElement('a');
  link.href = URL.createObjectURL(blob);
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

const csvCell = (text: string) => (/[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text);

/**
 * A chart's series as CSV: a header (the x column's name, then each series' label) and one row per x
 * value, with empty cells where a series has no point; numbers in full precision.
 */
export function seriesCsv(
  xName: string,
  labels: readonly string[],
  data: readonly [ReadonlyArray<number>, ...ReadonlyArray<ReadonlyArray<number | null>>],
): string {
  const [xs, ...columns] = data;
  const rows = [[xName, ...labels].map(csvCell).join(',')];
  xs.forEach((x, i) => {
    rows.push([String(x), ...columns.map((c) => (c[i] == null ? '' : String(c[i])))].join(','));
  });
  return `${rows.join('\n')}\n`;
}

/** A legend entry as drawn in an exported PNG. */
export interface LegendEntry {
  readonly label: string;
  readonly color: string;
  readonly width: number;
  readonly dash: readonly number[];
  readonly kind: 'line' | 'points' | 'band';
}

/**
 * The chart as a PNG a person can paste elsewhere: the title above, the plot (axes and curves, as
 * drawn), and the legend below with each entry's swatch as its curve is drawn, on white.
 */
export function chartImage(
  title: string,
  plot: HTMLCanvasElement,
  legend: readonly LegendEntry[],
): Promise<Blob> {
  const ratio = plot.width / plot.clientWidth || 1;
  const font = 12 * ratio;
  const perRow = Math.max(1, Math.floor(plot.width / (220 * ratio)));
  const legendHeight = Math.ceil(legend.length / perRow) * 18 * ratio;
  const canvas = document.createElement('canvas');
  canvas.width = plot.width;
  canvas.height = plot.height + 26 * ratio + legendHeight + 8 * ratio;
  const ctx = canvas.getContext('2d')!;
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = '#1d2330';
  ctx.font = `600 ${font * 1.1}px system-ui, sans-serif`;
  ctx.fillText(title, 8 * ratio, 18 * ratio);
  ctx.drawImage(plot, 0, 26 * ratio);
  ctx.font = `${font}px system-ui, sans-serif`;
  legend.forEach((entry, i) => {
    const x = (i % perRow) * 220 * ratio + 8 * ratio;
    const y = plot.height + 26 * ratio + Math.floor(i / perRow) * 18 * ratio + 12 * ratio;
    ctx.strokeStyle = entry.color;
    ctx.fillStyle = entry.color;
    ctx.lineWidth = Math.max(1, entry.width) * ratio;
    ctx.setLineDash(entry.dash.map((d) => d * ratio));
    if (entry.kind === 'points') {
      ctx.beginPath();
      ctx.arc(x + 12 * ratio, y - 4 * ratio, 4 * ratio, 0, 2 * Math.PI);
      ctx.fill();
    } else if (entry.kind === 'band') {
      ctx.fillRect(x, y - 9 * ratio, 24 * ratio, 10 * ratio);
    } else {
      ctx.beginPath();
      ctx.moveTo(x, y - 4 * ratio);
      ctx.lineTo(x + 24 * ratio, y - 4 * ratio);
      ctx.stroke();
    }
    ctx.setLineDash([]);
    ctx.fillStyle = '#1d2330';
    ctx.fillText(entry.label, x + 30 * ratio, y);
  });
  return new Promise((done, fail) =>
    canvas.toBlob(
      (blob) => (blob ? done(blob) : fail(new Error('the browser made no PNG of the chart'))),
      'image/png',
    ),
  );
}
