import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseFlags, UsageError } from '@badam/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  COMPARISON_FLAGS,
  formatMeanSd,
  formatRate,
  type RunnerDialect,
  type RunOptions,
  resolveComparisonPlan,
  runSeedComparison,
  summarizeSeeds,
} from '../src/index.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'badam-seed-comparison-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('seed statistics', () => {
  it('mean, sample sd, min and max; one seed has sd 0', () => {
    expect(summarizeSeeds([1, 2, 3])).toEqual({ mean: 2, sd: 1, min: 1, max: 3, n: 3 });
    expect(summarizeSeeds([0.5])).toEqual({ mean: 0.5, sd: 0, min: 0.5, max: 0.5, n: 1 });
    expect(() => summarizeSeeds([])).toThrow('no values');
    expect(formatMeanSd(summarizeSeeds([0.5, 0.6]), 1, 100, '%')).toBe('55.0% ± 7.1%');
    expect(formatRate(0.002)).toBe('2e-3');
  });
});

describe('comparison flags', () => {
  const plan = (argv: string[]) => resolveComparisonPlan(parseFlags(argv, COMPARISON_FLAGS), 42, 2e-3);
  it('seeds from --seed on; one rate without --learning_rates, a choice with several', () => {
    expect(plan([])).toEqual({ seeds: [42, 43, 44], learningRates: [2e-3], chooseRate: false });
    expect(plan(['--seeds', '2', '--learning_rates', '1e-3, 5e-3'])).toEqual({
      seeds: [42, 43],
      learningRates: [1e-3, 5e-3],
      chooseRate: true,
    });
  });
  it('refuses rates that are not positive numbers, or repeated, in the flag name', () => {
    expect(() => plan(['--learning_rates', '1e-3,,2e-3'])).toThrow(UsageError);
    expect(() => plan(['--learning_rates', '0'])).toThrow('"0" is not a number > 0');
    expect(() => plan(['--learning_rates', '1e-3,0.001'])).toThrow('--learning_rates lists a rate twice');
  });
});

describe('runSeedComparison', () => {
  const dialect: RunnerDialect = { name: 'test-runner', describeMethods: (m) => m.join(' or ') };
  it('chooses each rate on validation, reports the test split at it, writes table, JSON and band plot', async () => {
    const outputDir = join(dir, 'cmp');
    // A made-up score: validation prefers 1e-3 for block and 5e-3 for the others; test differs from validation.
    const loss = (method: string, rate: number, seed: number, split: string) =>
      (method === 'block' ? rate * 100 : 1 / (rate * 1000)) + seed / 1000 + (split === 'test' ? 1 : 0);
    const report = await runSeedComparison({
      options: { outputDir, overwriteOutputDir: false, outputDirIsDefault: false } as RunOptions,
      dialect,
      plan: { seeds: [1, 2], learningRates: [1e-3, 5e-3], chooseRate: true },
      metrics: [{ key: 'accuracy', label: 'accuracy', digits: 1, percent: true }],
      title: 'test',
      train: async (cell) => {
        // The loss curve the comparison plots comes from the run's trainer_log.jsonl.
        await mkdir(cell.outputDir, { recursive: true });
        await writeFile(
          join(cell.outputDir, 'trainer_log.jsonl'),
          `${JSON.stringify({ current_steps: 1, loss: cell.seed })}\n${JSON.stringify({ current_steps: 2, loss: 1 })}\n`,
        );
        const score = async (split: 'test' | 'validation') => ({
          eval_loss: loss(cell.method, cell.learningRate, cell.seed, split),
          accuracy: 0.5,
        });
        return {
          metrics: {
            peak_memory_bytes: 3e6,
            estimated_memory_bytes: 2e6,
            estimated_masters_bytes: 1,
            estimated_gradients_bytes: 2,
            estimated_optimizer_bytes: 3,
          },
          score,
          dispose: () => undefined,
        };
      },
      io: { log: () => undefined, warn: () => undefined },
    });
    expect(report.rows.map((r) => [r.method, r.learningRate])).toEqual([
      ['block', 1e-3],
      ['full', 5e-3],
      ['lora', 5e-3],
      ['sparse', 5e-3],
    ]);
    const block = report.rows[0]!;
    expect(block.test.eval_loss!.mean).toBeCloseTo(0.1 + 0.0015 + 1, 12);
    expect(block.test.eval_loss!.sd).toBeCloseTo(Math.SQRT1_2 / 1000, 12);
    expect(block.estimatedOptimizerBytes.mean).toBe(6);
    expect(report.runs).toHaveLength(16);
    const table = await readFile(join(outputDir, 'compare_table.md'), 'utf8');
    expect(table).toContain('| block | 1e-3 (chosen) | 3.00 | 2.00 | 0.00 |');
    expect(table).toContain('| block | **1e-3** |');
    expect(table).toContain('| block | 5e-3 |');
    const json = JSON.parse(await readFile(join(outputDir, 'compare_results.json'), 'utf8'));
    expect(json.runs).toHaveLength(16);
    expect(json.selection).toHaveLength(8);
    expect(existsSync(join(outputDir, 'compare_loss.png'))).toBe(true);
    // Each run's training loss curve, from its trainer_log.jsonl.
    expect(json.runs[0].lossCurve).toEqual([
      { step: 1, value: 1 },
      { step: 2, value: 1 },
    ]);
  });

  it('refuses an output directory holding an earlier comparison before any work', async () => {
    const outputDir = join(dir, 'occupied');
    await mkdir(outputDir, { recursive: true });
    await writeFile(join(outputDir, 'compare_results.json'), '{}');
    let trained = 0;
    await expect(
      runSeedComparison({
        options: { outputDir, overwriteOutputDir: false, outputDirIsDefault: false } as RunOptions,
        dialect,
        plan: { seeds: [1], learningRates: [1e-3], chooseRate: false },
        metrics: [],
        title: 'test',
        train: async () => {
          trained += 1;
          throw new Error('never');
        },
        io: { log: () => undefined, warn: () => undefined },
      }),
    ).rejects.toThrow('--overwrite_output_dir');
    expect(trained).toBe(0);
  });
});
