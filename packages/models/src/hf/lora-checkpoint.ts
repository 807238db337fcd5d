import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BadamOptionError, isLoraParameter } from '@badam/core';
import { SafetensorsError, SafetensorsFile } from '@badam/safetensors';
import * as tf from '@tensorflow/tfjs-core';
import { LLAMA_LORA_TARGETS, type LlamaForCausalLM } from '../llama/llama-model.js';

/** The file peft keeps an adapter's settings in. */
export const ADAPTER_CONFIG = 'adapter_config.json';
/** The file peft keeps an adapter's tensors in. */
export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';

/** A peft LoRA adapter's settings, as {@link loadLoraAdapter} applies them. */
export interface LoraAdapterConfig {
  readonly rank: number;
  readonly alpha: number;
  readonly dropout: number;
  /** The base model the adapter was trained on (`base_model_name_or_path`), as its config names it. */
  readonly baseModel: string;
}

/**
 * The LoRA adapter settings of a peft folder (`adapter_config.json`), or undefined when the folder has none.
 * Settings this implementation cannot apply (rsLoRA, per-module ranks, `modules_to_save`, DoRA) are an error
 * naming the setting.
 */
export async function readLoraAdapterConfig(directory: string): Promise<LoraAdapterConfig | undefined> {
  const path = join(directory, ADAPTER_CONFIG);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch (error) {
    throw new BadamOptionError(
      path,
      text.slice(0, 40),
      'peft adapter settings as JSON',
      (error as Error).message,
    );
  }
  if (json.peft_type !== undefined && json.peft_type !== 'LORA')
    throw new BadamOptionError(
      `${path} peft_type`,
      json.peft_type,
      '"LORA" (other peft methods are not supported)',
    );
  const unsupported: Array<[string, boolean]> = [
    ['use_rslora', json.use_rslora === true],
    ['use_dora', json.use_dora === true],
    ['rank_pattern', Object.keys((json.rank_pattern as object | null) ?? {}).length > 0],
    ['alpha_pattern', Object.keys((json.alpha_pattern as object | null) ?? {}).length > 0],
    ['modules_to_save', Array.isArray(json.modules_to_save) && json.modules_to_save.length > 0],
  ];
  for (const [key, set] of unsupported)
    if (set)
      throw new BadamOptionError(`${path} ${key}`, json[key], 'unset (plain LoRA: one rank and alpha)');
  const rank = json.r;
  const alpha = json.lora_alpha ?? rank;
  if (!Number.isSafeInteger(rank) || (rank as number) < 1)
    throw new BadamOptionError(`${path} r`, rank, 'an integer >= 1');
  if (typeof alpha !== 'number' || !(alpha > 0))
    throw new BadamOptionError(`${path} lora_alpha`, alpha, 'a number > 0');
  return {
    rank: rank as number,
    alpha,
    dropout: typeof json.lora_dropout === 'number' ? json.lora_dropout : 0,
    baseModel: typeof json.base_model_name_or_path === 'string' ? json.base_model_name_or_path : '',
  };
}

/** peft's tensor name of a model's adapter variable (`...lora_A.default.weight` -> `base_model.model....lora_A.weight`). */
function peftName(name: string): string {
  return `base_model.model.${name.replace('.default.weight', '.weight')}`;
}

/**
 * Adds the LoRA adapter saved in a peft folder (by `saveLoraAdapter`, LLaMA-Factory or peft itself:
 * adapter_config.json and adapter_model.safetensors) to `model`, with its rank, alpha and the modules its
 * tensors adapt, so that it trains on (LoRA) or is merged (`model.mergeLora()`) or used for generation. A
 * tensor missing, left over or of another shape is an error naming it and the folder.
 *
 * @example
 * ```ts
 * const { model } = await loadLlama('models/Llama-3.2-1B');
 * await loadLoraAdapter(model, 'output/lora');
 * model.mergeLora();
 * ```
 */
export async function loadLoraAdapter(
  model: LlamaForCausalLM,
  directory: string,
): Promise<LoraAdapterConfig> {
  const config = await readLoraAdapterConfig(directory);
  if (config === undefined)
    throw new BadamOptionError(
      'adapter folder',
      directory,
      `a peft LoRA adapter folder with ${ADAPTER_CONFIG}`,
    );
  const file = await SafetensorsFile.open(join(directory, ADAPTER_WEIGHTS)).catch((error: unknown) => {
    throw error instanceof SafetensorsError
      ? new BadamOptionError(
          'adapter folder',
          directory,
          `${ADAPTER_WEIGHTS} with the adapter's tensors`,
          error.message,
        )
      : error;
  });
  try {
    const names = file.names();
    const targets = new Set<string>();
    for (const name of names) {
      const module = /\.([a-z_]+)\.lora_[AB]\.weight$/.exec(name)?.[1];
      if (module === undefined || !(LLAMA_LORA_TARGETS as readonly string[]).includes(module))
        throw new BadamOptionError(
          `${directory}/${ADAPTER_WEIGHTS} tensor`,
          name,
          `a LoRA tensor of a Llama linear layer (${LLAMA_LORA_TARGETS.join(', ')})`,
        );
      targets.add(module);
    }
    model.addLora({
      rank: config.rank,
      alpha: config.alpha,
      dropout: config.dropout,
      targetModules: [...targets],
    });
    const wanted = new Set<string>();
    for (const [name, variable] of model.namedParameters) {
      if (!isLoraParameter(name)) continue;
      const stored = peftName(name);
      wanted.add(stored);
      if (!names.includes(stored))
        throw new BadamOptionError(`${directory}/${ADAPTER_WEIGHTS}`, `no ${stored}`, `the tensor ${stored}`);
      const array = await file.readFloat32(stored);
      const shape = file.entry(stored).shape;
      if (shape.join(',') !== variable.shape.join(','))
        throw new BadamOptionError(
          `${directory}/${ADAPTER_WEIGHTS} ${stored}`,
          `shape [${shape.join(', ')}]`,
          `[${variable.shape.join(', ')}] (rank ${config.rank} on this model)`,
        );
      tf.tidy(() => variable.assign(tf.tensor(array, variable.shape, 'float32')));
    }
    const extra = names.filter((n) => !wanted.has(n));
    if (extra.length > 0)
      throw new BadamOptionError(
        `${directory}/${ADAPTER_WEIGHTS}`,
        extra.slice(0, 3).join(', '),
        'only tensors of layers this model has (was the adapter trained on another base model?)',
      );
    return config;
  } finally {
    await file.close();
  }
}
