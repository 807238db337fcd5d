import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Board, startBoard } from '../src/index.js';
import { launchChromium } from './chromium.js';
import { FIXTURE_RUNS } from './fixture-runs.js';

let board: Board;
let browser: Browser;

beforeAll(async () => {
  board = await startBoard({ dirs: [FIXTURE_RUNS], port: 0, warn: () => {} });
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await board?.close();
});

async function fineTuneInPage(query: string, steps: number) {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(error.message));
  const requests: string[] = [];
  page.on('request', (request) => requests.push(request.url()));
  // Only the navigation is awaited here: the page's load waits for its 1.2 MB bundle and the backend's start,
  // which on a busy machine can pass goto's 30 s; the wait below (the page's own state) has the time.
  await page.goto(`${board.url}finetune?steps=${steps}&train=256&heldout=16&autostart=1&${query}`, {
    waitUntil: 'commit',
  });
  await page.waitForFunction(
    () => {
      const state = document.getElementById('state')?.dataset;
      return state?.done === 'true' || state?.error === 'true';
    },
    null,
    { timeout: 240_000 },
  );
  const state = (await page.locator('#state').textContent()) ?? '';
  expect(errors, state).toEqual([]);
  expect(state).toMatch(new RegExp(`^done: ${steps} steps in [\\d.]+ s on (webgpu|webgl|wasm)`));
  const result = {
    page,
    state,
    backend: (await page.locator('#backend').getAttribute('data-backend'))!,
    before: Number(await page.locator('#eval-before').textContent()),
    after: Number(await page.locator('#eval-after').textContent()),
    requests,
  };
  console.log(`in-page BAdam on ${result.backend}: eval loss ${result.before} -> ${result.after}; ${state}`);
  return result;
}

// Small enough for CI's two cores (some 20 s on wasm), long enough for BAdam to visit three blocks: 12
// steps of 16 examples, K = 4, evaluation every 6 steps.
const STEPS = 12;

describe('BAdam in the page, in Chromium', () => {
  it('fine-tunes the tiny Llama on the best backend the browser offers and lowers the eval loss', async () => {
    const { page, backend, before, after, requests } = await fineTuneInPage('k=4&eval=6', STEPS);
    expect(['webgpu', 'webgl', 'wasm']).toContain(backend);
    expect(await page.locator('#backend').textContent()).toContain(backend);
    // From a random tiny Llama (about ln 259 = 5.6 nats per byte) BAdam gets well below.
    expect(before).toBeGreaterThan(5);
    expect(after).toBeLessThan(before - 1);
    // The same charts as the board: three blocks trained (switches after steps 4, 8 and 12).
    expect(await page.locator('#chart-timeline').getAttribute('data-run0')).toBe('0:1-4 1:5-8 2:9-12');
    expect(Number(await page.locator('#chart-loss').getAttribute('data-points'))).toBeGreaterThanOrEqual(
      STEPS / 2,
    );
    // The question box was answered before and after.
    expect(await page.locator('#answer-before').textContent()).not.toBe('');
    expect(await page.locator('#answer-after').textContent()).not.toBe('');
    // Nothing left the page: every network request went to the board itself (blob: URLs are the wasm
    // backend's worker threads, made in the page).
    expect(requests.filter((url) => !url.startsWith(board.url) && !url.startsWith('blob:'))).toEqual([]);
    expect(requests.some((url) => url.startsWith(`${board.url}assets/wasm/`))).toBe(backend === 'wasm');
    await page.close();
  });

  it('trains on WebGL as well when asked, where the browser has it (headless Chromium: SwiftShader)', async () => {
    // WebGL through SwiftShader compiles a shader per new shape: a few steps, and no generated answers.
    const { page, backend, before, after } = await fineTuneInPage('backend=webgl&k=2&eval=4&ask=0', 4);
    expect(backend).toBe('webgl');
    expect(after).toBeLessThan(before - 0.5);
    await page.close();
  });
});
