import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatMemory, readTrainerLog } from '@badam/callbacks';
import { UsageError } from '@badam/core';
import { ByteTokenizer, HfTokenizer } from '@badam/data';
import { SafetensorsFile } from '@badam/safetensors';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scratchModelSource } from '../src/from-scratch.js';
import { generatedInstructions, runCommand, TINY_LLAMA_CONFIG, trainOptionsFrom } from '../src/index.js';

// --train_from_scratch (LLaMA-Factory's train_from_scratch: true): a model from a config.json alone.
let dir: string;
let dataFile: string;
let configDir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'badam-llama-scratch-'));
  dataFile = join(dir, 'tasks.json');
  const records = generatedInstructions(24, 0, 5).train.map(({ instruction, input, output }) => ({
    instruction,
    input,
    output,
  }));
  await writeFile(dataFile, JSON.stringify(records));
  // A Hugging Face folder with a config and a tokenizer and no weights at all; a wider initializer range
  // than the default, so that the weights show whose range they were drawn with.
  configDir = join(dir, 'config-only');
  await mkdir(configDir);
  const config = {
    ...TINY_LLAMA_CONFIG,
    hidden_size: 32,
    intermediate_size: 64,
    num_hidden_layers: 2,
    initializer_range: 0.05,
  };
  await writeFile(join(configDir, 'config.json'), JSON.stringify(config));
  const { tokenizer, config: tokenizerConfig } = new ByteTokenizer().toHuggingFace();
  await writeFile(join(configDir, 'tokenizer.json'), JSON.stringify(tokenizer));
  await writeFile(join(configDir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { log: (m: string) => out.push(m), warn: (m: string) => err.push(m) }, out, err };
}

function standardDeviation(values: Float32Array): number {
  let sum = 0;
  let squares = 0;
  for (const v of values) {
    sum += v;
    squares += v * v;
  }
  const mean = sum / values.length;
  return Math.sqrt(squares / values.length - mean * mean);
}

describe('--train_from_scratch', () => {
  it('accepts a shipped config by name or Hugging Face id, and refuses a hub id without it', () => {
    const { options } = trainOptionsFrom([
      ...['--model_name_or_path', 'HuggingFaceTB/SmolLM-135M', '--train_from_scratch'],
    ]);
    expect(options).toMatchObject({ trainFromScratch: true, modelNameOrPath: 'HuggingFaceTB/SmolLM-135M' });
    expect(() => trainOptionsFrom(['--model_name_or_path', 'HuggingFaceTB/SmolLM-135M'])).toThrow(UsageError);
    expect(() => trainOptionsFrom(['--train_from_scratch'])).toThrow(
      /--train_from_scratch builds the model of --model_name_or_path .*: name one/,
    );
  });

  it('builds the shipped configs with a byte tokenizer and a line that says the weights are random', async () => {
    const smol = await scratchModelSource('smollm-135m', 3);
    expect(smol.config).toMatchObject({
      hiddenSize: 576,
      numLayers: 30,
      numHeads: 9,
      numKeyValueHeads: 3,
      vocabSize: 49152,
      tieWordEmbeddings: true,
    });
    expect(smol.tokenizer).toBeInstanceOf(ByteTokenizer);
    expect(smol.sourceDir).toBeUndefined();
    expect(smol.note).toMatch(/the weights are RANDOM .*seed 3.*30 layers, hidden 576, vocab 49152/);
    const qwen = await scratchModelSource('Qwen/Qwen2.5-0.5B', 0);
    expect(qwen.config).toMatchObject({ hiddenSize: 896, numLayers: 24, vocabSize: 151936 });
    expect(qwen.config.qkvBias).toBe(true);
    expect((await scratchModelSource('tinyllama-1.1b', 0)).config.numLayers).toBe(22);

    const folder = await scratchModelSource(configDir, 0);
    expect(folder.initializerRange).toBe(0.05);
    expect(folder.tokenizer).toBeInstanceOf(HfTokenizer);
    expect(folder.sourceDir).toBe(configDir);
    await expect(scratchModelSource('gpt-17', 0)).rejects.toThrow(
      /--model_name_or_path gpt-17 with --train_from_scratch must be a local folder with config.json, or a config shipped with badam-llama: smollm-135m/,
    );
  });

  for (const backend of ['cpu', 'tfjs'] as const) {
    it(`trains a folder with no weights on --backend ${backend}, drawn with its config's initializer_range`, async () => {
      const outputDir = join(dir, `out-${backend}`);
      const { io, out, err } = capture();
      const progress: string[] = [];
      const stream = { write: (text: string) => progress.push(text) > 0 } as unknown as NodeJS.WriteStream;
      const code = await runCommand(
        [
          ...['--model_name_or_path', configDir, '--train_from_scratch', '--backend', backend],
          ...['--dataset', dataFile, '--cutoff_len', '48', '--per_device_train_batch_size', '4'],
          ...['--max_steps', '3', '--logging_steps', '1', '--switch_block_every', '2'],
          ...['--output_dir', outputDir],
        ],
        { ...io, stream },
      );
      expect(code, err.join('\n')).toBe(0);
      expect(err.join('\n')).toMatch(/--train_from_scratch: the weights are RANDOM \(normal\(0, 0\.05\)/);
      // Random logits of a byte vocabulary: a first loss near ln(256).
      const log = await readTrainerLog(join(outputDir, 'trainer_log.jsonl'));
      const first = log.find((l) => l.loss !== null)!.loss as number;
      expect(Math.abs(first - Math.log(256))).toBeLessThan(0.3);
      // The saved model is the config's, and a matrix no step trained has the config's spread.
      const saved = JSON.parse(await readFile(join(outputDir, 'config.json'), 'utf8'));
      expect(saved).toMatchObject({ hidden_size: 32, num_hidden_layers: 2 });
      // The progress line's peak is all_results.json's, and the run ends saying what each number counts.
      const results = JSON.parse(await readFile(join(outputDir, 'all_results.json'), 'utf8'));
      const peak = formatMemory(results.peak_memory_bytes);
      const steps = progress
        .join('')
        .split('\n')
        .filter((line) => line.startsWith('step '));
      expect(steps.at(-1)).toContain(`(peak ${peak};`);
      expect(out.join('\n')).toContain(`memory: peak ${peak} measured during a pass`);
      const file = await SafetensorsFile.open(join(outputDir, 'model.safetensors'));
      const untrained = await file.readFloat32('model.layers.1.mlp.down_proj.weight');
      await file.close();
      expect(standardDeviation(untrained)).toBeGreaterThan(0.045);
      expect(standardDeviation(untrained)).toBeLessThan(0.055);
    });
  }
});
