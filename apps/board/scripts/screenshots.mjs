// Takes the README's screenshots of both pages in headless Chromium (Debian's, or BADAM_CHROMIUM):
// docs/board.png, the board on the recorded runs in test/fixtures/compare (BAdam and full Adam, 60 steps
// each) with the loss chart's tooltip at step 30, and docs/finetune.png, the fine-tune page after 100 steps
// of BAdam in the page (some minutes on two cores).
// Run `pnpm --filter @badam/board build` first; then `pnpm --filter @badam/board screenshots [board|finetune]`
// (both when none is named).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
if (!existsSync(join(root, 'dist', 'web', 'finetune-page.js'))) {
  throw new Error('no built pages in dist/web: run pnpm --filter @badam/board build first');
}
const executablePath = process.env.BADAM_CHROMIUM ?? '/usr/bin/chromium';
if (!existsSync(executablePath)) {
  throw new Error(
    `no Chromium at ${executablePath}: sudo apt-get install -y chromium, or set BADAM_CHROMIUM`,
  );
}
const { startBoard } = await import(join(root, 'dist', 'src', 'index.js'));
const wanted = process.argv.slice(2);
const take = (name) => wanted.length === 0 || wanted.includes(name);
const board = await startBoard({ dirs: [join(root, 'test', 'fixtures', 'compare')], port: 0 });
const browser = await chromium.launch({ executablePath, headless: true, args: ['--no-sandbox'] });
try {
  const viewport = { width: 1400, height: 1000 };
  if (take('board')) {
    const page = await browser.newPage({ viewport });
    await page.goto(board.url);
    await page.locator('#run-1 .step').filter({ hasText: '60 / 60' }).waitFor();
    // The tooltip at step 30 of the loss chart: what a person hovering sees.
    const frame = JSON.parse(await page.locator('#chart-loss').getAttribute('data-frame'));
    const canvas = await page.locator('#chart-loss canvas').boundingBox();
    const x = frame.left + ((30 - frame.x[0]) / (frame.x[1] - frame.x[0])) * frame.width;
    await page.mouse.move(canvas.x + x, canvas.y + frame.top + frame.height / 2);
    await page.waitForTimeout(300);
    await page.screenshot({ path: join(root, 'docs', 'board.png'), fullPage: true });
    console.log('docs/board.png');
  }
  if (take('finetune')) {
    const tune = await browser.newPage({ viewport });
    await tune.goto(`${board.url}finetune?steps=100&k=25&eval=25&autostart=1`);
    await tune.waitForFunction(
      () => {
        const state = document.getElementById('state').dataset;
        return state.done === 'true' || state.error === 'true';
      },
      null,
      { timeout: 600_000 },
    );
    await tune.waitForTimeout(300);
    await tune.screenshot({ path: join(root, 'docs', 'finetune.png'), fullPage: true });
    const text = async (id) => tune.locator(`#${id}`).textContent();
    console.log(
      `docs/finetune.png: ${await text('backend')}, eval loss ${await text('eval-before')} -> ${await text('eval-after')}; ${await text('state')}`,
    );
  }
} finally {
  await browser.close();
  await board.close();
}
