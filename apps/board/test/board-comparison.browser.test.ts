import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Board, startBoard } from '../src/index.js';
import { hoverAt, inkedPoints, legendColor, showOnly } from './chart-pixels.js';
import { launchChromium } from './chromium.js';
import { type ComparisonTree, fixtureLog, makeComparisonTree } from './fixture-runs.js';

let tree: ComparisonTree;
let board: Board;
let browser: Browser;
let page: Page;
const pageErrors: string[] = [];

/** The block run's training losses (seed 1); seed 2's are these times 1.1. */
const losses = () =>
  fixtureLog('block')
    .filter((l) => typeof l.loss === 'number')
    .map((l) => [l.current_steps as number, l.loss as number] as [number, number]);

beforeAll(async () => {
  tree = makeComparisonTree();
  board = await startBoard({ dirs: [tree.root], port: 0, warn: () => {} });
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
  page.on('pageerror', (error) => pageErrors.push(error.message));
  await page.goto(board.url);
  await page.locator('#run-3 .step').filter({ hasText: '60 / 60' }).waitFor({ timeout: 20_000 });
}, 40_000);
afterAll(async () => {
  await browser?.close();
  await board?.close();
  tree?.remove();
});

describe("a comparison's output directory in Chromium", () => {
  it('finds the runs below it, named by method and seed, and shows its summary table and plots', async () => {
    expect(await page.locator('#runs td.name').allTextContents()).toEqual([
      'block/seed-1',
      'block/seed-2',
      'full/seed-1',
      'full/seed-2',
    ]);
    const table = page.locator('#comparison-0 table.summary');
    expect(await table.locator('th').allTextContents()).toContain('eval loss');
    expect(await table.locator('tbody tr td:first-child').allTextContents()).toEqual(['block', 'full']);
    expect(await page.locator('#comparison-0 h2').textContent()).toBe('comparison: compare');
    const widths = async (selector: string) =>
      page.locator(selector).evaluateAll(async (imgs) =>
        Promise.all(
          (imgs as HTMLImageElement[]).map((img) =>
            img.decode().then(
              () => img.naturalWidth,
              () => 0,
            ),
          ),
        ),
      );
    expect(await widths('#comparison-0 img')).toEqual([60]);
    expect(await widths('#images-0 img')).toEqual([40]);
    expect(await page.locator('#run-0 .eval-accuracy').textContent()).toMatch(/^0\.\d{4}$/);
    expect(pageErrors).toEqual([]);
  });

  it("draws each method's seeds as their mean with a band, and each seed on its own when asked", async () => {
    const legend = await page
      .locator('#chart-loss .legend-item')
      .evaluateAll((i) => i.map((e) => (e as HTMLElement).dataset.label));
    expect(legend).toEqual(
      expect.arrayContaining(['block: mean loss', 'block: smoothed mean', 'block: lowest-highest loss of 2']),
    );
    expect(legend).not.toContain('block/seed-1: loss');
    const color = await legendColor(page, 'loss', 'block: mean loss');
    await showOnly(page, 'loss', ['block: mean loss']);
    const mean = losses().map(([step, loss]) => [step, (loss + 1.1 * loss) / 2] as [number, number]);
    expect(await inkedPoints(page, 'loss', mean, color)).toBe(mean.length);
    const { rows } = await hoverAt(page, 'loss', 40);
    expect(Number(rows.find((r) => r.label === 'block: mean loss')!.value)).toBeCloseTo(
      mean.find(([s]) => s === 40)![1],
      4,
    );
    // The band: between the seeds' curves, where they are far enough apart to have an inside.
    const band = await legendColor(page, 'loss', 'block: lowest-highest loss of 2');
    await showOnly(page, 'loss', ['block: lowest-highest loss of 2']);
    const inside = losses()
      .filter(([, loss]) => loss > 2.5)
      .map(([step, loss]) => [step, 1.05 * loss] as [number, number]);
    expect(inside.length).toBeGreaterThan(2);
    expect(await inkedPoints(page, 'loss', inside, band)).toBe(inside.length);
    await showOnly(page, 'loss', []);
    expect(await inkedPoints(page, 'loss', inside, band)).toBe(0);

    await page.locator('#group-seeds').uncheck();
    await page.waitForFunction(
      () => document.querySelector('#chart-loss .legend-item[data-label="block/seed-2: loss"]') !== null,
    );
    const seed2 = await legendColor(page, 'loss', 'block/seed-2: loss');
    await showOnly(page, 'loss', ['block/seed-2: loss']);
    const scaled = losses().map(([step, loss]) => [step, 1.1 * loss] as [number, number]);
    expect(await inkedPoints(page, 'loss', scaled, seed2)).toBe(scaled.length);
    expect(pageErrors).toEqual([]);
  });
});
