import { appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { smoothSeries } from '@badam/core';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type Board, startBoard } from '../src/index.js';
import {
  chartPixels,
  frameOf,
  hoverAt,
  inkedNear,
  inkedPoints,
  legendColor,
  pixelOf,
  resetView,
  rgbOf,
  showOnly,
} from './chart-pixels.js';
import { launchChromium } from './chromium.js';
import { copyFixtureRuns, fixtureLog, fixtureSwitches } from './fixture-runs.js';
import { decodePng, type Pixels } from './png.js';

let runs: ReturnType<typeof copyFixtureRuns>;
let board: Board;
let browser: Browser;
let page: Page;
const pageErrors: string[] = [];
const MIB = 2 ** 20;

/** The recorded run's training lines and a key's values at their steps. */
function logPoints(run: 'block' | 'full', key: string, scale = 1): Array<[number, number]> {
  return fixtureLog(run)
    .filter((l) => typeof l.loss === 'number' && typeof l[key] === 'number')
    .map((l) => [l.current_steps as number, (l[key] as number) / scale]);
}

function memoryKind(run: 'block' | 'full', kind: string): Array<[number, number]> {
  return fixtureLog(run)
    .filter((l) => typeof l.loss === 'number')
    .map((l) => [l.current_steps as number, (l.memory_by_kind as Record<string, number>)[kind]! / MIB]);
}

function smoothedPoints(run: 'block' | 'full'): Array<[number, number]> {
  const raw = logPoints(run, 'loss');
  const smooth = smoothSeries(raw.map(([, v]) => v));
  return raw.map(([step], i) => [step, smooth[i]!]);
}

function evalPoints(run: 'block' | 'full'): Array<[number, number]> {
  return fixtureLog(run)
    .filter((l) => typeof l.eval_loss === 'number')
    .map((l) => [l.current_steps as number, l.eval_loss as number]);
}

/** The block timeline the recorded switches imply: points in the middle of each stretch, at its block. */
function timelinePoints(): Array<[number, number]> {
  const switches = fixtureSwitches();
  return switches.map(([step, from], i) => {
    const first = i === 0 ? 1 : switches[i - 1]![0] + 1;
    return [Math.round((first + step) / 2), from];
  });
}

beforeAll(async () => {
  runs = copyFixtureRuns();
  board = await startBoard({ dirs: [runs.dir], port: 0, warn: () => {} });
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1400, height: 1100 }, acceptDownloads: true });
  page.on('pageerror', (error) => pageErrors.push(error.message));
  await page.goto(board.url);
  await page.locator('#run-1 .step').filter({ hasText: '60 / 60' }).waitFor({ timeout: 20_000 });
}, 40_000);
afterAll(async () => {
  await browser?.close();
  await board?.close();
  runs?.remove();
});

/** Every curve checked: chart, legend label, where the log puts its points. */
const CURVES: ReadonlyArray<[string, string, () => Array<[number, number]>]> = [
  ['loss', 'block: loss', () => logPoints('block', 'loss')],
  ['loss', 'block: smoothed', () => smoothedPoints('block')],
  ['loss', 'block: eval loss', () => evalPoints('block')],
  ['loss', 'full: loss', () => logPoints('full', 'loss')],
  ['loss', 'full: smoothed', () => smoothedPoints('full')],
  ['loss', 'full: eval loss', () => evalPoints('full')],
  ['timeline', 'block: block', timelinePoints],
  ['timeline', 'block: switch', () => fixtureSwitches().map(([step, , to]) => [step, to])],
  ['lr', 'block', () => logPoints('block', 'learning_rate')],
  ['lr', 'full', () => logPoints('full', 'learning_rate')],
  ['grad-norm', 'block', () => logPoints('block', 'grad_norm')],
  ['grad-norm', 'full', () => logPoints('full', 'grad_norm')],
  ['tokens', 'block', () => logPoints('block', 'tokens_per_second')],
  ['tokens', 'full', () => logPoints('full', 'tokens_per_second')],
  ['memory', 'block: total', () => logPoints('block', 'memory_bytes', MIB)],
  ['memory', 'full: total', () => logPoints('full', 'memory_bytes', MIB)],
  ['memory', 'block: weights', () => memoryKind('block', 'weights')],
  ['memory', 'block: optimizerState', () => memoryKind('block', 'optimizerState')],
  ['memory', 'block: other', () => memoryKind('block', 'other')],
  ['memory', 'full: optimizerState', () => memoryKind('full', 'optimizerState')],
];

describe('the board in Chromium: what a person sees', () => {
  beforeEach(async () => {
    if (!page.isClosed() && (await page.locator('#status.final').count()) === 0) await resetView(page);
  });

  it.each(CURVES)(
    '%s chart: "%s" is inked along the log\'s values in its colour, and not when hidden',
    async (chart, label, points) => {
      const expected = points();
      expect(expected.length).toBeGreaterThan(3);
      const color = await legendColor(page, chart, label);
      await showOnly(page, chart, [label]);
      // Every point of the log on the curve; the dashed memory kinds may fall in a gap, so most of theirs.
      const needed = chart === 'memory' && label !== 'block: total' && label !== 'full: total' ? 0.7 : 1;
      expect(await inkedPoints(page, chart, expected, color)).toBeGreaterThanOrEqual(
        Math.ceil(needed * expected.length),
      );
      await showOnly(page, chart, []);
      expect(await inkedPoints(page, chart, expected, color)).toBe(0);
      await showOnly(
        page,
        chart,
        await page
          .locator(`#chart-${chart} .legend-item`)
          .evaluateAll((i) => i.map((e) => (e as HTMLElement).dataset.label!)),
      );
      expect(pageErrors).toEqual([]);
    },
  );

  it("hovering a step shows each run's value there, as the log has it", async () => {
    for (const step of [10, 40]) {
      const { head, rows } = await hoverAt(page, 'loss', step);
      expect(head).toBe(`step ${step}`);
      for (const run of ['block', 'full'] as const) {
        const logged = logPoints(run, 'loss').find(([s]) => s === step)![1];
        const row = rows.find((r) => r.label === `${run}: loss`)!;
        expect(row.step).toBe(String(step));
        expect(Number(row.value)).toBeCloseTo(logged, 4);
        const smoothed = smoothedPoints(run).find(([s]) => s === step)![1];
        expect(Number(rows.find((r) => r.label === `${run}: smoothed`)!.value)).toBeCloseTo(smoothed, 4);
      }
    }
    const memory = await hoverAt(page, 'memory', 20);
    const total = memory.rows.find((r) => r.label === 'block: total')!.value;
    expect(total).toMatch(/^[\d.]+ MiB$/);
    expect(Number.parseFloat(total)).toBeCloseTo(
      logPoints('block', 'memory_bytes', MIB).find(([s]) => s === 20)![1],
      2,
    );
  });

  it("the timeline's switches are at the log's steps: drawn there, and named there on hover", async () => {
    const recorded = fixtureSwitches();
    for (const [step, from, to] of recorded) {
      const { rows } = await hoverAt(page, 'timeline', step);
      expect(rows.find((r) => r.label === 'block: switch')?.value).toBe(
        `after step ${step}: block ${from} → ${to}`,
      );
    }
    expect(
      await page
        .locator('#block-switches li[data-run="0"]')
        .evaluateAll((li) => li.map((e) => Number((e as HTMLElement).dataset.step))),
    ).toEqual(recorded.map(([step]) => step));
    expect(await page.locator('#run-0 .switches').textContent()).toBe(String(recorded.length));
    expect(await page.locator('#run-1 .switches').textContent()).toBe('0');
  });

  it('memory is in MiB everywhere, its legend swatches are dashed as its lines, and block switches are marked', async () => {
    const results = JSON.parse(readFileSync(join(runs.dir, 'block', 'all_results.json'), 'utf8'));
    expect(await page.locator('th.peak-memory').textContent()).toBe('peak memory (MiB)');
    expect(await page.locator('#run-0 .peak-memory').textContent()).toBe(
      (results.peak_memory_bytes / MIB).toFixed(1),
    );
    expect(await page.locator('#chart-memory h2').textContent()).toMatch(/\(MiB\)/);
    // A swatch is dashed exactly when its line is: count the gaps along each.
    const gaps = (row: number[]) => row.filter((on, i) => i > 0 && on === 0 && row[i - 1] === 1).length;
    for (const label of ['block: total', 'block: weights', 'block: optimizerState', 'block: other']) {
      const swatch = decodePng(
        await page.locator(`#chart-memory .legend-item[data-label="${label}"] svg`).screenshot(),
      );
      const color = rgbOf(await legendColor(page, 'memory', label));
      const swatchRow = Array.from({ length: swatch.width - 4 }, (_, x) =>
        inkedNear(swatch, x + 2, 6, color, 0) ? 1 : 0,
      );
      await showOnly(page, 'memory', [label]);
      const frame = await frameOf(page, 'memory');
      const pixels = await chartPixels(page, 'memory');
      // Steps 42 to 48: a flat stretch of every kind.
      const y =
        logPoints('block', 'memory_bytes').length > 0
          ? memoryKind('block', label.split(': ')[1]!).find(([s]) => s === 44)?.[1]
          : 0;
      const value =
        label === 'block: total' ? logPoints('block', 'memory_bytes', MIB).find(([s]) => s === 44)![1] : y!;
      const [x0, py] = pixelOf(frame, 42, value);
      const [x1] = pixelOf(frame, 48, value);
      // Along the line: a column is inked if the line crosses it within 2 pixels of its height.
      const inColumn = (x: number) => [-2, -1, 0, 1, 2].some((dy) => inkedNear(pixels, x, py + dy, color, 0));
      const lineRow = Array.from({ length: Math.round(x1 - x0) }, (_, k) =>
        inColumn(Math.round(x0) + k) ? 1 : 0,
      );
      const dashed = label !== 'block: total' && label !== 'block: weights';
      expect(gaps(swatchRow) > 0, `${label} swatch dashed`).toBe(dashed);
      expect(gaps(lineRow) > 0, `${label} line dashed`).toBe(dashed);
    }
    // Only the markers: a grey dashed line at each switch, none between (the grid's lines are far lighter).
    await showOnly(page, 'memory', ['block switch']);
    const frame = await frameOf(page, 'memory');
    const grey = rgbOf('#7a7a7a');
    const column = (pixels: Pixels, step: number) => {
      const [px] = pixelOf(frame, step, 0);
      let inked = 0;
      for (let py = Math.ceil(frame.top); py < frame.top + frame.height; py++) {
        if (inkedNear(pixels, px, py, grey, 1, 0.4)) inked++;
      }
      return inked / frame.height;
    };
    const marked = await chartPixels(page, 'memory');
    for (const [step] of fixtureSwitches().filter(([s]) => s < 60)) {
      expect(column(marked, step), `switch at ${step}`).toBeGreaterThan(0.3);
    }
    expect(column(marked, 15)).toBeLessThan(0.05);
    await showOnly(page, 'memory', []);
    expect(column(await chartPixels(page, 'memory'), 20)).toBeLessThan(0.05);
  });

  it('draws the loss on a log scale and against wall time when asked', async () => {
    await page.locator('#log-loss').check();
    await page.waitForFunction(
      () => JSON.parse(document.getElementById('chart-loss')!.dataset.frame!).log === true,
    );
    await showOnly(page, 'loss', ['block: loss']);
    const raw = logPoints('block', 'loss');
    expect(await inkedPoints(page, 'loss', raw, await legendColor(page, 'loss', 'block: loss'))).toBe(
      raw.length,
    );
    await page.locator('#log-loss').uncheck();
    await page.locator('#x-axis').selectOption('time');
    await page.waitForFunction(
      () => JSON.parse(document.getElementById('chart-loss')!.dataset.frame!).x[1] < 30,
    );
    // The last training line, at its elapsed_time (whole seconds: 0:00:12).
    const last = fixtureLog('block')
      .filter((l) => typeof l.loss === 'number')
      .at(-1)!;
    const seconds = (last.elapsed_time as string).split(':').reduce((a, b) => 60 * a + Number(b), 0);
    const { head, rows } = await hoverAt(page, 'loss', seconds);
    expect(head).toBe(`wall time 0:00:${String(seconds).padStart(2, '0')}`);
    expect(rows.find((r) => r.label === 'block: loss')?.step).toBe(String(last.current_steps));
    await page.locator('#x-axis').selectOption('step');
    await showOnly(
      page,
      'loss',
      await page
        .locator('#chart-loss .legend-item')
        .evaluateAll((i) => i.map((e) => (e as HTMLElement).dataset.label!)),
    );
  });

  it('exports a chart as PNG and its series as CSV', async () => {
    const [png] = await Promise.all([
      page.waitForEvent('download'),
      page.locator('#chart-loss .export-png').click(),
    ]);
    expect(png.suggestedFilename()).toBe('loss.png');
    const image = decodePng(readFileSync((await png.path())!));
    const canvas = await page.locator('#chart-loss canvas').boundingBox();
    expect(image.width).toBe(Math.round(canvas!.width));
    let blue = 0;
    for (let i = 0; i < image.rgba.length; i += 4)
      if (image.rgba[i]! < 60 && image.rgba[i + 2]! > 150) blue++;
    expect(blue).toBeGreaterThan(200);
    const [csv] = await Promise.all([
      page.waitForEvent('download'),
      page.locator('#chart-loss .export-csv').click(),
    ]);
    const lines = readFileSync((await csv.path())!, 'utf8')
      .trim()
      .split('\n');
    expect(lines[0]).toBe(
      'step,block: loss,block: smoothed,block: eval loss,full: loss,full: smoothed,full: eval loss',
    );
    const at40 = lines.find((l) => l.startsWith('40,'))!.split(',');
    expect(Number(at40[1])).toBe(logPoints('block', 'loss').find(([s]) => s === 40)![1]);
    expect(Number(at40[3])).toBe(evalPoints('block').find(([s]) => s === 40)![1]);
  });

  it('shows and hides runs, and filters them by name', async () => {
    const full = await legendColor(page, 'lr', 'full');
    await page.locator('#run-1 .show input').uncheck();
    await page.waitForFunction(() => !document.querySelector('#chart-lr .legend-item[data-label="full"]'));
    const points = logPoints('full', 'grad_norm');
    expect(await inkedPoints(page, 'grad-norm', points, full)).toBe(0);
    await page.locator('#run-1 .show input').check();
    await page.locator('#run-filter').fill('^bl');
    await page.waitForFunction(() => (document.getElementById('run-1') as HTMLElement).hidden);
    expect(await page.locator('#chart-lr .legend-item').count()).toBe(1);
    await page.locator('#run-filter').fill('');
    await page.waitForFunction(() => document.querySelectorAll('#chart-lr .legend-item').length === 2);
  });

  it('shows eval accuracy and exact match, and where each run stands', async () => {
    const results = JSON.parse(readFileSync(join(runs.dir, 'block', 'all_results.json'), 'utf8'));
    expect(await page.locator('#run-0 .eval-accuracy').textContent()).toBe(results.eval_accuracy.toFixed(4));
    expect(await page.locator('#run-0 .exact-match').textContent()).toBe(
      results.exact_match_after.toFixed(3),
    );
    expect(await page.locator('#run-0 .status').textContent()).toBe('finished');
    const accuracy = fixtureLog('block').filter((l) => typeof l.eval_accuracy === 'number');
    const color = await legendColor(page, 'eval', 'block: accuracy');
    expect(
      await inkedPoints(
        page,
        'eval',
        accuracy.map((l) => [l.current_steps as number, l.eval_accuracy as number]),
        color,
      ),
    ).toBe(accuracy.length);
  });

  it('skips a null line with a note, shows the lines after it within a second, and a stopped board leaves a final state', async () => {
    const log = join(runs.dir, 'block', 'trainer_log.jsonl');
    const started = Date.now();
    appendFileSync(
      log,
      `null\n${JSON.stringify({ current_steps: 62, total_steps: 62, loss: 0.4321, learning_rate: 1e-5, active_block: 3, block_switches: [{ step: 61, from: 2, to: 3 }] })}\n`,
    );
    await page.locator('#run-0 .loss').filter({ hasText: '0.4321' }).waitFor({ timeout: 1000 });
    expect(Date.now() - started).toBeLessThan(1000);
    expect(await page.locator('#run-0 .step').textContent()).toBe('62 / 62');
    expect(await page.locator('#notes li[data-run="0"]').textContent()).toMatch(
      /trainer_log\.jsonl line 37: null is not an object/,
    );
    expect(await page.locator('#block-switches li[data-run="0"]').count()).toBe(fixtureSwitches().length + 1);

    await board.close('the process that started this board has ended (its training is over)');
    await page.locator('#status.final').waitFor({ timeout: 3000 });
    expect(await page.locator('#status').textContent()).toMatch(
      /training is over.*To look again: badam-board .*block/,
    );
    await page.waitForTimeout(500);
    expect(await page.locator('#status').getAttribute('class')).toBe('final');
    // Still usable: hover reads the last state.
    const { rows } = await hoverAt(page, 'loss', 40);
    expect(rows.some((r) => r.label === 'block: loss')).toBe(true);
    expect(pageErrors).toEqual([]);
  });
});
