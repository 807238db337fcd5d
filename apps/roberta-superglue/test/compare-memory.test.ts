import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { robertaOptionsFrom, runRobertaComparison } from '../src/index.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'badam-roberta-memory-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('compare leaves no tensor behind', () => {
  it('tf.memory() is the same before every run of every method and after the last (3 seeds, shrunk)', async () => {
    // Each cell's model is disposed before the next cell starts (runSeedComparison logs `== method, ...` then).
    const memory: Array<{ at: string; numTensors: number; numBytes: number }> = [];
    const sample = (at: string) => {
      const { numTensors, numBytes } = tf.memory();
      memory.push({ at, numTensors, numBytes });
    };
    const { options } = robertaOptionsFrom([
      // Two windows per sparse run (a window's Adam state was left behind at each), one block switch.
      ...['--max_steps', '2', '--switch_every', '1', '--eval_every_steps', '2', '--logging_steps', '1'],
      ...['--output_dir', join(dir, 'compare')],
    ]);
    await runRobertaComparison(
      options,
      { seeds: [1, 2, 3], learningRates: [1e-3], chooseRate: false },
      {
        log: (m) => {
          const cell = /^\n== (\w+, lr \S+, seed \d+) ==/.exec(m);
          if (cell) sample(`before ${cell[1]}`);
        },
        warn: () => {},
      },
      { trainExamples: 8, evalExamples: 4 },
    );
    sample('after the comparison');
    expect(memory).toHaveLength(13);
    const [first] = memory;
    for (const m of memory) expect(m, m.at).toEqual({ ...first, at: m.at });
  });
});
