import { join } from 'node:path';
import { parseFlags } from '@badam/core';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { FINE_TUNING_METHODS, fineTune, resolveRunOptions } from '../src/index.js';
import { DIALECT, FLAGS, runnerTestSetup, tinyMlpSpec } from './fixtures/test-runner.js';
import { tinyMlp } from './fixtures/tiny-mlp.js';

const setup = runnerTestSetup('badam-runner-memory-');

const quiet = { log: () => {}, warn: () => {} };

function memory() {
  const { numTensors, numBytes } = tf.memory();
  return { numTensors, numBytes };
}

describe('fineTune leaves no tensor behind', () => {
  for (const method of FINE_TUNING_METHODS) {
    it(`${method}: three runs in one process (checkpoints saved, then resumed twice) hold nothing after they end`, async () => {
      const out = join(setup.dir, method);
      for (const resume of [false, true, true]) {
        const flags = [
          ...['--learning_rate', '0.05', '--logging_steps', '1', '--output_dir', out],
          ...['--max_steps', '6', '--save_steps', '3'],
          // Several blocks, and several windows of the ratio's Adam state, per run.
          ...(method === 'block' || method === 'sparse' ? ['--switch_block_every', '2'] : []),
          ...(resume ? ['--resume_from_checkpoint', join(out, 'checkpoint-3')] : []),
        ];
        const options = resolveRunOptions(parseFlags(flags, FLAGS), method, DIALECT, {
          outputDir: out,
          loraRank: 2,
        });
        // The model (adapters included) is the caller's: made before, it stays after; the run holds nothing more.
        const { model, variables } = tinyMlp(1);
        if (method === 'lora') model.addLora();
        const before = memory();
        const spec = tinyMlpSpec(model, setup.label, quiet);
        await fineTune({ ...spec, model: { ...model, addLora: () => {} }, options });
        expect(memory(), resume ? 'resumed run' : 'first run').toEqual(before);
        for (const [, v] of variables()) v.dispose();
      }
    });
  }
});
