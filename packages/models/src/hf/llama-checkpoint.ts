import { join } from 'node:path';
import {
  BadamOptionError,
  isLoraParameter,
  type LlamaConfig,
  llamaConfigFromHf,
  llamaConfigToHf,
  type NamedArray,
} from '@badam/core';
import {
  float32ToBfloat16,
  float32ToFloat16,
  SafetensorsError,
  SafetensorsModel,
  writeFileAtomic,
  writeSafetensors,
  writeSafetensorsModel,
} from '@badam/safetensors';
import * as tf from '@tensorflow/tfjs-core';
import { LlamaForCausalLM, type LlamaModelOptions } from '../llama/llama-model.js';
import { readConfigJson } from './config-json.js';
import { checkFiniteWeight } from './finite-weights.js';

/** What {@link loadLlama} returns. */
export interface LoadedLlama {
  readonly model: LlamaForCausalLM;
  readonly config: LlamaConfig;
  /** Tensors in the checkpoint that the model has no parameter for (e.g. `rotary_emb.inv_freq`). */
  readonly unusedTensors: readonly string[];
}

/** Reads and parses `<dir>/config.json` of a Llama-family model, naming the file in every error. */
export async function readLlamaConfig(directory: string): Promise<LlamaConfig> {
  const { json, path } = await readConfigJson(directory);
  return llamaConfigFromHf(json, path);
}

/**
 * Loads a Llama-family model from a local Hugging Face directory: config.json and `model.safetensors` or
 * sharded `model-0000x-of-0000y.safetensors` with its index. F32, F16 and BF16 tensors are read into fp32
 * (tfjs has no 16-bit float). A missing tensor or a shape that does not match config.json is an error
 * naming the tensor and the file.
 *
 * @example
 * ```ts
 * const { model } = await loadLlama('./TinyLlama-1.1B');
 * ```
 */
export async function loadLlama(directory: string, options: LlamaModelOptions = {}): Promise<LoadedLlama> {
  const config = await readLlamaConfig(directory);
  const weights = await SafetensorsModel.open(directory);
  const model = new LlamaForCausalLM(config, { ...options, skipInitialization: true });
  try {
    const wanted = new Set<string>();
    for (const [name, variable] of model.namedParameters) {
      wanted.add(name);
      if (!weights.has(name)) {
        throw new SafetensorsError(
          directory,
          `missing tensor ${JSON.stringify(name)}, which config.json's architecture needs`,
        );
      }
      const shape = weights.shapeOf(name);
      if (shape.join(',') !== variable.shape.join(',')) {
        throw new SafetensorsError(
          directory,
          `tensor ${name} has shape [${shape.join(', ')}], config.json implies [${variable.shape.join(', ')}]`,
        );
      }
      const values = await weights.readFloat32(name);
      checkFiniteWeight(directory, name, values);
      tf.tidy(() => variable.assign(tf.tensor(values, variable.shape, 'float32')));
    }
    const unusedTensors = weights
      .names()
      .filter((n) => !wanted.has(n) && !(config.tieWordEmbeddings && n === 'lm_head.weight'));
    return { model, config, unusedTensors };
  } catch (error) {
    model.dispose();
    throw error;
  } finally {
    await weights.close();
  }
}

/** Options of {@link saveLlama}. */
export interface SaveLlamaOptions {
  /** Storage dtype of the weights. Default `float32` (what tfjs trained); `bfloat16` halves the size. */
  dtype?: 'float32' | 'bfloat16' | 'float16';
  /** Shard when the weights exceed this many bytes. Default 5 GiB (Hugging Face's default). */
  maxShardBytes?: number;
}

/** A model's weights as named arrays in `dtype`. */
export function llamaWeights(
  model: LlamaForCausalLM,
  dtype: SaveLlamaOptions['dtype'] = 'float32',
): NamedArray[] {
  return model.namedParameters
    .filter(([name]) => !isLoraParameter(name))
    .map(([name, variable]) => {
      const values = variable.dataSync() as Float32Array;
      const data =
        dtype === 'bfloat16'
          ? float32ToBfloat16(values)
          : dtype === 'float16'
            ? float32ToFloat16(values)
            : Float32Array.from(values);
      return { name, dtype, shape: [...variable.shape], data };
    });
}

/**
 * Saves a model in Hugging Face's format: config.json and model.safetensors (sharded with an index past
 * `maxShardBytes`), every file written atomically. LoRA adapters are not included: merge them first
 * (`model.mergeLora()`) or save them with {@link saveLoraAdapter}.
 */
export async function saveLlama(
  model: LlamaForCausalLM,
  directory: string,
  options: SaveLlamaOptions = {},
): Promise<string[]> {
  const dtype = options.dtype ?? 'float32';
  const files = await writeSafetensorsModel(directory, llamaWeights(model, dtype), {
    ...(options.maxShardBytes !== undefined ? { maxShardBytes: options.maxShardBytes } : {}),
  });
  const config = { ...llamaConfigToHf(model.config), torch_dtype: dtype };
  await writeFileAtomic(join(directory, 'config.json'), [`${JSON.stringify(config, null, 2)}\n`]);
  return ['config.json', ...files];
}

/**
 * Saves the LoRA adapters as peft does: adapter_model.safetensors (names
 * `base_model.model.<module>.lora_A.weight`) and adapter_config.json.
 */
export async function saveLoraAdapter(
  model: LlamaForCausalLM,
  directory: string,
  baseModel = '',
): Promise<string[]> {
  const lora = model.lora;
  if (lora === undefined)
    throw new BadamOptionError('model', 'no adapters', 'a model with LoRA adapters (addLora)');
  const tensors: NamedArray[] = model.namedParameters
    .filter(([name]) => isLoraParameter(name))
    .map(([name, variable]) => ({
      name: `base_model.model.${name.replace('.default.weight', '.weight')}`,
      dtype: 'float32',
      shape: [...variable.shape],
      data: Float32Array.from(variable.dataSync()),
    }));
  await writeSafetensors(join(directory, 'adapter_model.safetensors'), tensors, { format: 'pt' });
  const config = {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: baseModel,
    r: lora.rank,
    lora_alpha: lora.alpha,
    lora_dropout: lora.dropout ?? 0,
    target_modules: lora.targetModules,
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
  };
  await writeFileAtomic(join(directory, 'adapter_config.json'), [`${JSON.stringify(config, null, 2)}\n`]);
  return ['adapter_model.safetensors', 'adapter_config.json'];
}
