import type { Page } from 'playwright-core';
import { decodePng, type Pixels } from './png.js';

/** Where a chart draws: its plot area in the canvas (CSS pixels) and its scales, as the page reports them. */
export interface Frame {
  readonly left: number;
  readonly top: number;
  readonly width: number;
  readonly height: number;
  readonly x: [number, number];
  readonly y: [number, number];
  readonly log: boolean;
}

export async function frameOf(page: Page, chart: string): Promise<Frame> {
  return JSON.parse((await page.locator(`#chart-${chart}`).getAttribute('data-frame'))!) as Frame;
}

/** The canvas pixel of a value (x by the chart's x scale, y by its y scale, log10 on a log scale). */
export function pixelOf(frame: Frame, x: number, y: number): [number, number] {
  const f = (v: number) => (frame.log ? Math.log10(v) : v);
  const [x0, x1] = frame.x;
  const [y0, y1] = frame.y.map(f) as [number, number];
  return [
    frame.left + ((x - x0) / (x1 - x0)) * frame.width,
    frame.top + (1 - (f(y) - y0) / (y1 - y0)) * frame.height,
  ];
}

/** What the chart's canvas shows on screen now (a screenshot: what a person sees, CSS hiding included). */
export async function chartPixels(page: Page, chart: string): Promise<Pixels> {
  await page.mouse.move(0, 0); // no tooltip over the curves
  return decodePng(await page.locator(`#chart-${chart} canvas`).screenshot({ timeout: 5000 }));
}

/** `#rrggbb` (or `#rrggbbaa`) as numbers. */
export function rgbOf(color: string): [number, number, number] {
  const hex = color.replace('#', '');
  return [0, 2, 4].map((i) => Number.parseInt(hex.slice(i, i + 2), 16)) as [number, number, number];
}

/**
 * True when the pixel is ink of `color`: on the line from white to the colour (a curve drawn faint, with
 * transparency or anti-aliased, is a lighter shade of it), and not white. Grid lines and other colours
 * are off that line.
 */
export function isInk(
  pixels: Pixels,
  px: number,
  py: number,
  color: [number, number, number],
  minShade = 0.12,
): boolean {
  const i = (py * pixels.width + px) * 4;
  const p = [pixels.rgba[i]!, pixels.rgba[i + 1]!, pixels.rgba[i + 2]!];
  const d = color.map((c) => c - 255);
  const v = p.map((c) => c - 255);
  const dd = d.reduce((a, b) => a + b * b, 0);
  const t = v.reduce((a, b, k) => a + b * d[k]!, 0) / dd;
  const residual = Math.hypot(...v.map((c, k) => c - t * d[k]!));
  // A faint grid line is a little along every colour's line too, but far off it for its shade.
  return t >= minShade && t <= 1.3 && residual <= 6 + 0.15 * t * Math.sqrt(dd);
}

/** True when some pixel within `radius` of (x, y) is ink of `color`. */
export function inkedNear(
  pixels: Pixels,
  x: number,
  y: number,
  color: [number, number, number],
  radius = 2,
  minShade = 0.12,
): boolean {
  for (let dy = -radius; dy <= radius; dy++) {
    for (let dx = -radius; dx <= radius; dx++) {
      const px = Math.round(x) + dx;
      const py = Math.round(y) + dy;
      if (px < 0 || py < 0 || px >= pixels.width || py >= pixels.height) continue;
      if (isInk(pixels, px, py, color, minShade)) return true;
    }
  }
  return false;
}

/** How many of the points are inked in `color` in the chart's canvas now. */
export async function inkedPoints(
  page: Page,
  chart: string,
  points: ReadonlyArray<[number, number]>,
  color: string,
): Promise<number> {
  const frame = await frameOf(page, chart);
  const pixels = await chartPixels(page, chart);
  const rgb = rgbOf(color);
  return points.filter(([x, y]) => inkedNear(pixels, ...pixelOf(frame, x, y), rgb)).length;
}

/** The colour a legend entry's swatch is drawn in (its line's stroke, its point's or band's fill). */
export async function legendColor(page: Page, chart: string, label: string): Promise<string> {
  return page
    .locator(`#chart-${chart} .legend-item[data-label="${label}"] svg > *`)
    .evaluate((shape) => shape.getAttribute('stroke') ?? shape.getAttribute('fill') ?? '');
}

/** Clicks legend entries so that exactly `labels` are shown. */
export async function showOnly(page: Page, chart: string, labels: readonly string[]): Promise<void> {
  // Clicked in the page (one round trip for all of them): the legend's own click handlers run.
  await page.locator(`#chart-${chart} .legend-item`).evaluateAll((items, wanted) => {
    for (const item of items as HTMLElement[]) {
      const show = wanted.includes(item.dataset.label!);
      if (item.getAttribute('aria-pressed') !== String(show)) item.click();
    }
  }, labels);
}

/** Moves the mouse onto the chart at x (and y, default mid-height) and returns the tooltip's rows. */
export async function hoverAt(
  page: Page,
  chart: string,
  x: number,
  y?: number,
): Promise<{ head: string; rows: Array<{ label: string; value: string; step: string | null }> }> {
  const frame = await frameOf(page, chart);
  await page.locator(`#chart-${chart} canvas`).scrollIntoViewIfNeeded();
  const box = (await page.locator(`#chart-${chart} canvas`).boundingBox())!;
  const [px, py] = pixelOf(frame, x, y ?? frame.y[0]);
  // The plot's last value is on its right edge, which belongs to the frame around it: stay a pixel inside.
  const inside = Math.min(Math.max(px, frame.left + 1), frame.left + frame.width - 1);
  await page.mouse.move(box.x + inside, box.y + (y === undefined ? frame.top + frame.height / 2 : py));
  const hover = page.locator(`#chart-${chart} .hover`);
  await hover.waitFor({ state: 'visible', timeout: 2000 });
  return {
    head: (await hover.locator('.hover-x').textContent())!,
    rows: await hover.locator('.hover-row').evaluateAll((rows) =>
      rows.map((r) => ({
        label: (r as HTMLElement).dataset.label!,
        value: r.querySelector('b')!.textContent!,
        step: (r as HTMLElement).dataset.step ?? null,
      })),
    ),
  };
}

/** Puts the page's view back: step axis, linear loss, every run and every curve shown, no filter. */
export async function resetView(page: Page): Promise<void> {
  await page.locator('#x-axis').selectOption('step');
  await page.locator('#log-loss').uncheck();
  await page.locator('#run-filter').fill('');
  await page.evaluate(() => {
    (document.getElementById('show-all') as HTMLButtonElement).click();
    document.querySelectorAll<HTMLElement>('.legend-item[aria-pressed="false"]').forEach((item) => {
      item.click();
    });
  });
  await page.waitForFunction(
    () =>
      JSON.parse(document.getElementById('chart-loss')!.dataset.frame!).log === false &&
      document.querySelectorAll('.legend-item[aria-pressed="false"]').length === 0 &&
      document.querySelectorAll('#runs tr.off').length === 0,
  );
}
