import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError } from '@badam/core';
import { ByteTokenizer, HfTokenizer, type Tokenizer } from '@badam/data';
import {
  type LlamaConfig,
  llamaConfigFromHf,
  readConfigJson,
  SHIPPED_LLAMA_CONFIGS,
  shippedLlamaConfig,
} from '@badam/models';

/** What `--train_from_scratch` builds a model from: a config.json, its initializer range and a tokenizer. */
export interface ScratchModelSource {
  readonly config: LlamaConfig;
  /** config.json's `initializer_range` (Hugging Face's default 0.02): the matrices' standard deviation. */
  readonly initializerRange: number;
  readonly tokenizer: Tokenizer;
  /** The folder whose tokenizer files the run copies beside its model, or undefined (a shipped config). */
  readonly sourceDir: string | undefined;
  /** The line that says the weights are random, and where config and tokenizer come from. */
  readonly note: string;
}

const SHIPPED_NAMES = Object.entries(SHIPPED_LLAMA_CONFIGS)
  .map(([name, { hubId }]) => `${name} (${hubId})`)
  .join(', ');

/**
 * `--model_name_or_path` under `--train_from_scratch` (LLaMA-Factory's `train_from_scratch: true`): a local
 * folder's config.json and tokenizer, no weights read; or a config shipped with badam-llama (SmolLM-135M,
 * Qwen2.5-0.5B, TinyLlama-1.1B, by name or Hugging Face id) with a byte tokenizer (ids 0..255, in every
 * vocabulary), since no tokenizer ships. A folder without tokenizer.json also gets the byte tokenizer.
 */
export async function scratchModelSource(nameOrPath: string, seed: number): Promise<ScratchModelSource> {
  let json: Record<string, unknown>;
  let sourceDir: string | undefined;
  let where: string;
  if (existsSync(nameOrPath)) {
    json = (await readConfigJson(nameOrPath)).json as Record<string, unknown>;
    sourceDir = nameOrPath;
    where = `${join(nameOrPath, 'config.json')}`;
  } else {
    const shipped = shippedLlamaConfig(nameOrPath);
    if (shipped === undefined)
      throw new UsageError(
        `--model_name_or_path ${nameOrPath} with --train_from_scratch must be a local folder with config.json, or a config shipped with badam-llama: ${SHIPPED_NAMES}`,
      );
    json = shipped;
    where = `the shipped config.json of ${nameOrPath}`;
  }
  const config = llamaConfigFromHf(json, where);
  const range = json.initializer_range;
  const initializerRange = typeof range === 'number' && range > 0 ? range : 0.02;
  const hasTokenizer = sourceDir !== undefined && existsSync(join(sourceDir, 'tokenizer.json'));
  const tokenizer = hasTokenizer ? await HfTokenizer.fromDirectory(sourceDir!) : new ByteTokenizer();
  const tokenizerSource = hasTokenizer
    ? `its tokenizer.json`
    : 'a byte tokenizer (ids 0..255; no tokenizer.json to read)';
  const note =
    `--train_from_scratch: the weights are RANDOM (normal(0, ${initializerRange}) matrices, zero biases, unit norms, as Hugging Face initialises; seed ${seed}), ` +
    `nothing is loaded: ${config.numLayers} layers, hidden ${config.hiddenSize}, vocab ${config.vocabSize} from ${where}, with ${tokenizerSource}`;
  return { config, initializerRange, tokenizer, sourceDir, note };
}
