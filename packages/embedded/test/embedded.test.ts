import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parametersOf, parseHfConfig } from '@badam/core';
import { SafetensorsFile } from '@badam/safetensors';
import { describe, expect, it } from 'vitest';
import {
  builtinLlamaConfig,
  embeddedPretrainedDir,
  generatedCorpus,
  generatedInstructions,
  TASKS,
  TINY_LLAMA_CONFIG,
} from '../src/index.js';

describe('the shipped pretrained start', () => {
  it('is the built-in tiny Llama: its config, and every parameter with its shape', async () => {
    const dir = embeddedPretrainedDir();
    expect(readdirSync(dir).sort()).toEqual(['config.json', 'model.safetensors', 'pretraining.json']);
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(config).toMatchObject(TINY_LLAMA_CONFIG);
    expect(builtinLlamaConfig()).toMatchObject({
      vocabSize: 259,
      hiddenSize: 96,
      numLayers: 4,
      padTokenId: 256,
    });
    const file = await SafetensorsFile.open(join(dir, 'model.safetensors'));
    try {
      const shipped = file.names().map((name) => ({ name, shape: [...file.entry(name).shape] }));
      const expected = parametersOf(parseHfConfig(TINY_LLAMA_CONFIG), 'float32').map(({ name, shape }) => ({
        name,
        shape,
      }));
      expect(shipped.sort((a, b) => a.name.localeCompare(b.name))).toEqual(
        expected.sort((a, b) => a.name.localeCompare(b.name)),
      );
    } finally {
      await file.close();
    }
    const record = JSON.parse(readFileSync(join(dir, 'pretraining.json'), 'utf8')) as { final_loss: number };
    expect(record.final_loss).toBeGreaterThan(0);
  });
});

describe('generated data', () => {
  it('instructions: seeded, disjoint sets, every task in equal shares, answers that are right', () => {
    const sets = generatedInstructions(40, 20, 7, 8);
    expect(generatedInstructions(40, 20, 7, 8)).toEqual(sets);
    // `eval` does not depend on the validation set drawn after it.
    expect(generatedInstructions(40, 20, 7).eval).toEqual(sets.eval);
    const key = (i: { instruction: string; input: string }) => `${i.instruction}|${i.input}`;
    const all = [...sets.train, ...sets.eval, ...sets.validation].map(key);
    expect(new Set(all).size).toBe(all.length);
    for (const task of TASKS) expect(sets.eval.filter((i) => i.task === task)).toHaveLength(5);
    for (const item of [...sets.train, ...sets.eval]) {
      const expected = {
        copy: item.input,
        reverse: [...item.input].reverse().join(''),
        sort: [...item.input].sort().join(''),
        add: String(item.input.split('+').reduce((a, b) => a + Number(b), 0)),
      }[item.task];
      expect(item.output, JSON.stringify(item)).toBe(expected);
    }
  });

  it('pretraining text: seeded lines that state the skills', () => {
    const lines = generatedCorpus(10, 3);
    expect(generatedCorpus(10, 3)).toEqual(lines);
    expect(lines[2]).toMatch(/^([a-f]+) reversed is [a-f]+\.$/);
    const [, word, reversed] = /^([a-f]+) reversed is ([a-f]+)\.$/.exec(lines[2]!)!;
    expect(reversed).toBe([...word!].reverse().join(''));
  });
});
