import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The recorded runs: `badam-llama --finetuning_type block|full --max_steps 60 --switch_block_every 10
 * --logging_steps 2 --eval_steps 10` on the embedded default, their trainer_log.jsonl and results files as
 * written (test/fixtures/compare/{block,full}).
 */
export const FIXTURE_RUNS = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'compare');

/** A copy of the recorded runs in a temporary directory, for tests that append to or replace the logs. */
export function copyFixtureRuns(): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'badam-board-'));
  cpSync(FIXTURE_RUNS, join(dir, 'compare'), { recursive: true });
  return { dir: join(dir, 'compare'), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** The recorded log of one run, parsed. */
export function fixtureLog(run: 'block' | 'full'): Array<Record<string, unknown>> {
  return readFileSync(join(FIXTURE_RUNS, run, 'trainer_log.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** The recorded block switches of the BAdam run, as `[step, from, to]`. */
export function fixtureSwitches(): Array<[number, number, number]> {
  return fixtureLog('block').flatMap((l) =>
    ((l.block_switches ?? []) as Array<{ step: number; from: number; to: number }>).map(
      (s) => [s.step, s.from, s.to] as [number, number, number],
    ),
  );
}
