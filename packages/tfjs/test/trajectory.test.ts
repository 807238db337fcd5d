import type { SwitchMode } from '@badam/core';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlockOptimizer } from '../src/index.js';
import { onBackend, TEST_BACKENDS } from './fixtures/backends.js';
import { createTinyLlama, randomTokens, snapshot } from './fixtures/tiny-llama.js';

const CONFIG = { vocab: 16, hidden: 8, intermediate: 12, layers: 3, heads: 2 };
const LR = 0.01;
const K = 2;

interface Case {
  title: string;
  switchMode: SwitchMode;
  startBlock?: number;
  includeEmbedding?: boolean;
  includeLmHead?: boolean;
  activeModules?: string[];
  /** The blocks as parameter-name prefixes, in partition order, written out by hand. */
  blocks: string[][];
  /** Partition indices of the turns, K steps each. */
  turns: number[];
  always?: string[];
}

const layer = (i: number) => [`model.layers.${i}.`];
const CASES: Case[] = [
  { title: 'ascending', switchMode: 'ascending', blocks: [0, 1, 2].map(layer), turns: [0, 1, 2, 0, 1] },
  { title: 'descending', switchMode: 'descending', blocks: [0, 1, 2].map(layer), turns: [2, 1, 0, 2, 1] },
  {
    // The reference's fixed mode: the same block, a new sub-problem (fresh Adam) every K steps.
    title: 'fixed + startBlock (stays, fresh state every K steps)',
    switchMode: 'fixed',
    startBlock: 1,
    blocks: [0, 1, 2].map(layer),
    turns: [1, 1, 1, 1],
  },
  {
    title: 'ascending + startBlock, includeEmbedding and includeLmHead',
    switchMode: 'ascending',
    startBlock: 3,
    includeEmbedding: true,
    includeLmHead: true,
    blocks: [['model.embed_tokens.'], ...[0, 1, 2].map(layer), ['model.norm.', 'lm_head.']],
    turns: [3, 4, 0, 1, 2, 3, 4],
  },
  {
    title: 'descending + activeModules (lm_head trains in every block)',
    switchMode: 'descending',
    activeModules: ['lm_head.'],
    blocks: [0, 1, 2].map(layer),
    turns: [2, 1, 0, 2],
    always: ['lm_head.'],
  },
];

for (const backend of TEST_BACKENDS) {
  describe(`BlockOptimizer + Adam on ${backend} equals plain Adam on the active block, reset at every switch`, () => {
    beforeAll(async () => {
      await onBackend(backend);
    });
    afterAll(() => tf.disposeVariables());

    for (const c of CASES) {
      it(c.title, () => {
        const badam = createTinyLlama(CONFIG, 3);
        const plain = createTinyLlama(CONFIG, 3);
        const optimizer = new BlockOptimizer({
          baseOptimizer: tf.train.adam(LR, 0.9, 0.999, 1e-8),
          namedParameters: badam.named,
          switchBlockEvery: K,
          switchMode: c.switchMode,
          verbose: 0,
          ...(c.startBlock !== undefined ? { startBlock: c.startBlock } : {}),
          ...(c.includeEmbedding ? { includeEmbedding: true } : {}),
          ...(c.includeLmHead ? { includeLmHead: true } : {}),
          ...(c.activeModules ? { activeModules: c.activeModules } : {}),
        });
        let step = 0;
        for (const turn of c.turns) {
          // The reference: a brand-new Adam for every turn, gradients for the turn's variables only.
          const prefixes = [...c.blocks[turn]!, ...(c.always ?? [])];
          const variables = plain.named
            .filter(([name]) => prefixes.some((p) => name.startsWith(p)))
            .map(([, v]) => v);
          const adam = tf.train.adam(LR, 0.9, 0.999, 1e-8);
          expect(optimizer.activeBlock.index).toBe(turn);
          for (let k = 0; k < K; k++, step++) {
            const tokens = randomTokens(2, 6, CONFIG.vocab, 100 + step);
            optimizer.minimize(() => badam.loss(tokens));
            const { grads } = tf.variableGrads(() => plain.loss(tokens), variables);
            adam.applyGradients(grads as never);
            tf.dispose(grads);
            tokens.dispose();
            const got = snapshot(badam.named);
            const want = snapshot(plain.named);
            for (const [name, values] of want) {
              const actual = got.get(name)!;
              for (let i = 0; i < values.length; i++) {
                if (Math.abs(actual[i]! - values[i]!) > 1e-5) {
                  throw new Error(
                    `${c.title}: step ${step + 1}, ${name}[${i}] = ${actual[i]}, expected ${values[i]}`,
                  );
                }
              }
            }
          }
          adam.dispose();
        }
        // Something did train, and frozen parameters did not move.
        const initial = snapshot(createTinyLlama(CONFIG, 3).named);
        const final = snapshot(badam.named);
        const moved = [...final]
          .filter(([name, v]) => v.some((x, i) => x !== initial.get(name)![i]))
          .map(([n]) => n);
        expect(moved.length).toBeGreaterThan(0);
        if (!c.includeEmbedding) expect(moved).not.toContain('model.embed_tokens.weight');
        if (!c.includeLmHead && !c.always) expect(moved).not.toContain('lm_head.weight');
        optimizer.dispose();
      });
    }
  });
}
