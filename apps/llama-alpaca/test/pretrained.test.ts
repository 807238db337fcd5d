import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ByteTokenizer } from '@badam/data';
import { generate, LlamaForCausalLM, llamaConfigFromHf, llamaConfigToHf } from '@badam/models';
import { SafetensorsFile } from '@badam/safetensors';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DEFAULT_PRETRAIN_SETTINGS,
  EMBEDDED_PRETRAINED_DIR,
  loadEmbeddedPretrained,
  lossPer100Steps,
  PRETRAINED_STEPS,
  type PretrainingRecord,
  runCommand,
  runEmbeddedDefault,
  TINY_LLAMA_CONFIG,
  trainOptionsFrom,
} from '../src/index.js';

const quiet = { log: () => {}, warn: () => {}, write: () => {} };
const sha256 = async (path: string) =>
  createHash('sha256')
    .update(await readFile(path))
    .digest('hex');

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'badam-llama-pretrain-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('badam-llama pretrain', () => {
  const pretrain = async (name: string, seed: number) => {
    const out = join(dir, name);
    const argv = ['pretrain', '--max_steps', '3', '--corpus_lines', '300', '--seed', String(seed)];
    expect(
      await runCommand([...argv, '--output_dir', out, '--log_dir', join(dir, `${name}-log`)], quiet),
    ).toBe(0);
    return out;
  };

  it('gives the same bytes for the same seed, and other weights for another seed', async () => {
    const first = await pretrain('a', 42);
    const second = await pretrain('b', 42);
    const other = await pretrain('c', 7);
    expect((await readdir(first)).sort()).toEqual(['config.json', 'model.safetensors', 'pretraining.json']);
    for (const file of ['config.json', 'model.safetensors', 'pretraining.json'])
      expect(await sha256(join(second, file)), file).toBe(await sha256(join(first, file)));
    expect(await sha256(join(other, 'model.safetensors'))).not.toBe(
      await sha256(join(first, 'model.safetensors')),
    );
    const record = JSON.parse(await readFile(join(first, 'pretraining.json'), 'utf8')) as PretrainingRecord;
    expect(record.settings).toEqual({ ...DEFAULT_PRETRAIN_SETTINGS, steps: 3, corpusLines: 300 });
    expect(record.loss_per_100_steps.map((w) => w.steps)).toEqual(['1-100']);
    expect(Number.isFinite(record.final_loss)).toBe(true);
  });

  it('averages the logged loss over 100-step windows', () => {
    const log = [{ step: 50, loss: 2 }, { step: 100, loss: 1 }, { step: 100 }, { step: 150, loss: 0.5 }];
    expect(lossPer100Steps(log)).toEqual([
      { steps: '1-100', loss: 1.5 },
      { steps: '101-200', loss: 0.5 },
    ]);
  });
});

describe('the shipped pretrained start', () => {
  it('is the built-in tiny Llama in fp32, pretrained with the default settings', async () => {
    const config = JSON.parse(await readFile(join(EMBEDDED_PRETRAINED_DIR, 'config.json'), 'utf8'));
    expect(config).toEqual({
      ...llamaConfigToHf(llamaConfigFromHf(TINY_LLAMA_CONFIG, 'built-in tiny Llama')),
      torch_dtype: 'float32',
    });
    const record = JSON.parse(
      await readFile(join(EMBEDDED_PRETRAINED_DIR, 'pretraining.json'), 'utf8'),
    ) as PretrainingRecord;
    expect(record.settings).toEqual({ ...DEFAULT_PRETRAIN_SETTINGS, steps: PRETRAINED_STEPS });
    expect(record.loss_per_100_steps).toHaveLength(PRETRAINED_STEPS / 100);
    expect(record.final_loss).toBe(record.loss_per_100_steps.at(-1)!.loss);

    // The header names every parameter of the model with its shape, in fp32, and nothing else.
    const reference = new LlamaForCausalLM(llamaConfigFromHf(TINY_LLAMA_CONFIG, 'built-in tiny Llama'));
    const expected = reference.namedParameters.map(([name, v]) => [name, v.shape] as const);
    reference.dispose();
    const file = await SafetensorsFile.open(join(EMBEDDED_PRETRAINED_DIR, 'model.safetensors'));
    try {
      expect(
        file
          .names()
          .map((name) => [name, file.entry(name).shape] as const)
          .sort(),
      ).toEqual([...expected].sort());
      expect(new Set(file.names().map((name) => file.entry(name).dtype))).toEqual(new Set(['F32']));
    } finally {
      await file.close();
    }
  });

  it('loads, and completes statements of the kind it was pretrained on', async () => {
    const { model } = await loadEmbeddedPretrained();
    const tokenizer = new ByteTokenizer();
    try {
      const complete = (prompt: string) => {
        const ids = generate(
          model,
          [tokenizer.eosTokenId!, ...tokenizer.encode(prompt, { addSpecialTokens: false })],
          {
            maxNewTokens: 12,
            stopTokenIds: [tokenizer.eosTokenId!],
          },
        );
        return tokenizer.decode(ids, { skipSpecialTokens: true });
      };
      // Copying and sorting are learnt in pretraining; reversing and adding mostly are not (docs/benchmarks.md).
      expect(complete('cafe copied is ')).toBe('cafe.');
      expect(complete('4913 sorted is ')).toBe('1349.');
      expect(complete('the cat sees ')).toMatch(
        /^(the letters|a number|some words|the list|a book|the digits)\.$/,
      );
    } finally {
      model.dispose();
    }
  });
});

describe('the embedded default', () => {
  it('fine-tunes the shipped start without pretraining at run time (shrunk)', async () => {
    const out = join(dir, 'embedded');
    const { options } = trainOptionsFrom(['--max_steps', '2', '--eval_steps', '2', '--output_dir', out]);
    const lines: string[] = [];
    const result = await runEmbeddedDefault(
      options,
      { log: (m) => lines.push(m), warn: () => {} },
      { trainExamples: 16, evalExamples: 4 },
    );
    const text = lines.join('\n');
    expect(text).toContain(
      `starting from the shipped pretrained model (${PRETRAINED_STEPS} steps of full AdamW`,
    );
    expect(text).not.toContain('pretraining from scratch');
    expect(await readdir(out)).not.toContain('pretrain');
    expect(Number.isFinite(result.metrics.eval_loss as number)).toBe(true);
  });
});
