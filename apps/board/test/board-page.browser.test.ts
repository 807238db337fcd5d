import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Board, startBoard } from '../src/index.js';
import { launchChromium } from './chromium.js';
import { copyFixtureRuns, fixtureLog, fixtureSwitches } from './fixture-runs.js';

let runs: ReturnType<typeof copyFixtureRuns>;
let board: Board;
let browser: Browser;
let page: Page;
const pageErrors: string[] = [];

beforeAll(async () => {
  runs = copyFixtureRuns();
  board = await startBoard({ dirs: [runs.dir], port: 0, warn: () => {} });
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
  page.on('pageerror', (error) => pageErrors.push(error.message));
  await page.goto(board.url);
  await page.locator('#run-1 .step').filter({ hasText: '60 / 60' }).waitFor({ timeout: 15_000 });
});
afterAll(async () => {
  await browser?.close();
  await board?.close();
  runs?.remove();
});

describe('the board in Chromium', () => {
  it('renders every chart of the recorded runs, overlaid', async () => {
    const panels = ['loss', 'timeline', 'lr', 'grad-norm', 'tokens', 'memory'];
    for (const id of panels) {
      const panel = page.locator(`#chart-${id}`);
      await expect(panel.locator('canvas').count(), id).resolves.toBe(1);
      // 30 training lines at steps 2..60 in both runs, plus step 0 nowhere: 30 shared x values.
      if (id !== 'timeline')
        expect(Number(await panel.getAttribute('data-points')), id).toBeGreaterThanOrEqual(30);
    }
    const legend = await page.locator('#chart-loss .u-legend').textContent();
    for (const label of [
      'block: loss',
      'block: smoothed',
      'block: eval loss',
      'full: smoothed',
      'full: eval loss',
    ])
      expect(legend).toContain(label);
    expect(await page.locator('#chart-memory .u-legend').textContent()).toMatch(
      /block: weights[\s\S]*block: gradients/,
    );
    // The canvas really has the curves on it: many non-white pixels.
    const inked = await page.locator('#chart-loss canvas').evaluate((canvas: HTMLCanvasElement) => {
      const { data } = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height);
      let n = 0;
      for (let i = 0; i < data.length; i += 4) if (data[i + 3]! > 0 && data[i]! < 200) n++;
      return n;
    });
    expect(inked).toBeGreaterThan(1000);
    const last = fixtureLog('block')
      .filter((l) => typeof l.eval_loss === 'number')
      .at(-1)!;
    expect(await page.locator('#run-0 .eval-loss').textContent()).toBe((last.eval_loss as number).toFixed(4));
    expect(await page.locator('#run-0 .results').textContent()).toMatch(/train_loss 2\.197/);
    expect(pageErrors).toEqual([]);
  });

  it('shows the recorded block switches on the timeline', async () => {
    const items = page.locator('#block-switches li[data-run="0"]');
    const recorded = fixtureSwitches();
    expect(await items.count()).toBe(recorded.length);
    expect(await items.evaluateAll((li) => li.map((e) => Number((e as HTMLElement).dataset.step)))).toEqual(
      recorded.map(([step]) => step),
    );
    expect(await items.first().textContent()).toBe(
      `block: after step ${recorded[0]![0]}, block ${recorded[0]![1]} → ${recorded[0]![2]}`,
    );
    expect(await page.locator('#run-0 .switches').textContent()).toBe(String(recorded.length));
    expect(await page.locator('#run-1 .switches').textContent()).toBe('0');
    // The timeline draws block 0 for steps 1-10, block 1 for 11-20, ...: the stretches between the switches.
    const stretches = recorded.map(
      ([step, from], i) => `${from}:${i === 0 ? 1 : recorded[i - 1]![0] + 1}-${step}`,
    );
    expect(await page.locator('#chart-timeline').getAttribute('data-run0')).toBe(stretches.join(' '));
    expect(await page.locator('#chart-timeline').getAttribute('data-run1')).toBe('');
    expect(await page.locator('#chart-timeline .u-legend').textContent()).toMatch(
      /block: block[\s\S]*block: switch/,
    );
  });

  it('shows a line appended to trainer_log.jsonl within a second', async () => {
    const log = join(runs.dir, 'block', 'trainer_log.jsonl');
    const started = Date.now();
    appendFileSync(
      log,
      `${JSON.stringify({ current_steps: 62, total_steps: 62, loss: 0.4321, learning_rate: 1e-5, active_block: 3, block_switches: [{ step: 61, from: 2, to: 3 }] })}\n`,
    );
    await page.locator('#run-0 .loss').filter({ hasText: '0.4321' }).waitFor({ timeout: 1000 });
    expect(Date.now() - started).toBeLessThan(1000);
    expect(await page.locator('#run-0 .step').textContent()).toBe('62 / 62');
    expect(await page.locator('#block-switches li[data-run="0"]').count()).toBe(fixtureSwitches().length + 1);
  });
});
