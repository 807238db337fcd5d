import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { isLoraParameter, UsageError } from '@badam/core';
import { HfTokenizer, type Tokenizer } from '@badam/data';
import { type LlamaForCausalLM, loadLlama, loadLoraAdapter, readLoraAdapterConfig } from '@badam/models';
import { refuseHubId } from './model-path.js';

/** A model folder as it loads: the base model's folder, the LoRA adapters on it, where the tokenizer is. */
export interface ModelFolders {
  /** The folder with config.json and the base weights. */
  readonly base: string;
  /** Adapter folders, in the order they apply. */
  readonly adapters: readonly string[];
  /** The folder whose tokenizer files (and chat template) the model uses. */
  readonly tokenizerDir: string;
}

/**
 * Where a model's parts are: `modelPath` is a model folder, or an adapter folder (adapter_config.json:
 * LoRA's output directory, or a LoRA run's checkpoint, whose own model.safetensors then holds the base).
 * An adapter folder without a base of its own names its base in `base_model_name_or_path`, which must be a
 * local folder. `adapters` (`--adapter_name_or_path`) come after.
 */
export async function modelFolders(
  modelPath: string,
  adapters: readonly string[] = [],
): Promise<ModelFolders> {
  const own = await readLoraAdapterConfig(modelPath);
  for (const adapter of adapters) {
    refuseHubId(adapter, 'adapter_name_or_path');
    if ((await readLoraAdapterConfig(adapter)) === undefined)
      throw new UsageError(
        `--adapter_name_or_path ${adapter} has no adapter_config.json: give a LoRA adapter folder (the output_dir of a --finetuning_type lora run, or peft's)`,
      );
  }
  const tokenizerDir = existsSync(join(modelPath, 'tokenizer.json')) ? modelPath : undefined;
  if (own === undefined) return { base: modelPath, adapters, tokenizerDir: tokenizerDir ?? modelPath };
  if (existsSync(join(modelPath, 'config.json')))
    return { base: modelPath, adapters: [modelPath, ...adapters], tokenizerDir: tokenizerDir ?? modelPath };
  const base = own.baseModel;
  if (base === '' || !existsSync(join(base, 'config.json')))
    throw new UsageError(
      `${modelPath} is a LoRA adapter, and its base model ${base === '' ? '(unnamed in adapter_config.json)' : JSON.stringify(base)} is not a model folder here: pass the base as --model_name_or_path and this folder as --adapter_name_or_path ${modelPath}`,
    );
  return { base, adapters: [modelPath, ...adapters], tokenizerDir: tokenizerDir ?? base };
}

/**
 * Loads a Llama with its LoRA adapters: all merged into the weights (`keepLast: false`: chat, prediction,
 * export, or training another method on the merged model), or all but the last merged and the last kept as
 * adapters (`keepLast: true`: LoRA training goes on with it).
 */
export async function loadLlamaWithAdapters(
  folders: ModelFolders,
  { keepLast }: { keepLast: boolean },
  warn: (message: string) => void,
): Promise<{ model: LlamaForCausalLM; tokenizer: Tokenizer }> {
  const { model, unusedTensors } = await loadLlama(folders.base);
  try {
    const unused = unusedTensors.filter((name) => !(folders.adapters.length > 0 && isLoraParameter(name)));
    if (unused.length > 0)
      warn(
        `badam-llama: ${unused.length} tensor(s) of the checkpoint are not used: ${unused.slice(0, 3).join(', ')}...`,
      );
    for (const [i, adapter] of folders.adapters.entries()) {
      await loadLoraAdapter(model, adapter);
      if (!(keepLast && i === folders.adapters.length - 1)) model.mergeLora();
    }
    return { model, tokenizer: await HfTokenizer.fromDirectory(folders.tokenizerDir) };
  } catch (error) {
    model.dispose();
    throw error;
  }
}
