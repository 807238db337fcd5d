import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { solidPng } from './png.js';

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

/** The recorded log of a run with every loss (and eval loss) scaled: another seed's run, made from a real one. */
export function scaledLog(run: 'block' | 'full', factor: number): string {
  return fixtureLog(run)
    .map((l) => ({
      ...l,
      loss: typeof l.loss === 'number' ? l.loss * factor : l.loss,
      eval_loss: typeof l.eval_loss === 'number' ? l.eval_loss * factor : l.eval_loss,
    }))
    .map((l) => `${JSON.stringify(l)}\n`)
    .join('');
}

/** What {@link makeComparisonTree} wrote where. */
export interface ComparisonTree {
  /** A repository-like root: .git/config, secret.txt, and the comparison under output/compare. */
  readonly root: string;
  /** output/compare: compare_table.md, compare_loss.png and {block,full}/seed-{1,2}. */
  readonly comparison: string;
  /** The secret text no response may contain. */
  readonly secret: string;
  remove(): void;
}

/**
 * A repository-like directory holding a seed comparison as `badam-llama compare` lays it out:
 * output/compare/{block,full}/seed-{1,2}/ with the recorded logs (seed 2 with the losses scaled by 1.1),
 * results, a training_loss.png and a model file each, the comparison's table and plot beside them; around
 * it files the board must never serve (.git/config, secret.txt), a hidden run and a symbolic link loop.
 */
export function makeComparisonTree(): ComparisonTree {
  const root = mkdtempSync(join(tmpdir(), 'badam-board-tree-'));
  const secret = 'not for the board: secret-7f3a';
  mkdirSync(join(root, '.git'));
  writeFileSync(join(root, '.git', 'config'), `[core]\n\t${secret}\n`);
  writeFileSync(join(root, 'secret.txt'), secret);
  const comparison = join(root, 'output', 'compare');
  for (const method of ['block', 'full'] as const) {
    for (const seed of [1, 2]) {
      const dir = join(comparison, method, `seed-${seed}`);
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'trainer_log.jsonl'), scaledLog(method, seed === 1 ? 1 : 1.1));
      for (const file of ['all_results.json', 'eval_results.json']) {
        cpSync(join(FIXTURE_RUNS, method, file), join(dir, file));
      }
      writeFileSync(
        join(dir, 'training_loss.png'),
        solidPng(40, 20, method === 'block' ? [200, 30, 30] : [30, 30, 200]),
      );
      writeFileSync(join(dir, 'model.safetensors'), secret);
    }
  }
  writeFileSync(
    join(comparison, 'compare_table.md'),
    [
      'tiny Llama, embedded default; mean ± sample sd over seeds 1, 2',
      '',
      '| method | learning rate | peak memory measured (MB) | eval loss | exact match |',
      '| --- | --- | --- | --- | --- |',
      '| block | 2e-3 | 197.28 | 1.517 ± 0.076 | 0.025 ± 0.000 |',
      '| full | 2e-3 | 201.04 | 1.402 ± 0.070 | 0.050 ± 0.000 |',
      '',
    ].join('\n'),
  );
  writeFileSync(join(comparison, 'compare_loss.png'), solidPng(60, 30, [30, 160, 30]));
  writeFileSync(join(comparison, 'compare_results.json'), '{"rows": []}\n');
  symlinkSync('..', join(comparison, 'loop'));
  mkdirSync(join(root, '.cache', 'hidden-run'), { recursive: true });
  writeFileSync(join(root, '.cache', 'hidden-run', 'trainer_log.jsonl'), scaledLog('block', 1));
  return { root, comparison, secret, remove: () => rmSync(root, { recursive: true, force: true }) };
}
