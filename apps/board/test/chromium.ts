import { existsSync } from 'node:fs';
import { type Browser, chromium } from 'playwright-core';

/** Debian's Chromium, or the one BADAM_CHROMIUM names. Nothing is downloaded. */
export const CHROMIUM = process.env.BADAM_CHROMIUM ?? '/usr/bin/chromium';

/**
 * Launches the system's Chromium headless through playwright-core. Fails with the fix when it is missing:
 * the browser tests are the proof that the pages work, so they do not skip.
 */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `no Chromium at ${CHROMIUM}: install Debian's (sudo apt-get install -y chromium; .ci/run does it) or set BADAM_CHROMIUM to a Chromium binary`,
    );
  }
  // --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
}
