import { join } from 'node:path';
import { BadamOptionError, type EncoderHead, isLoraParameter, type NamedArray } from '@badam/core';
import {
  float32ToBfloat16,
  SafetensorsError,
  SafetensorsModel,
  writeFileAtomic,
  writeSafetensorsModel,
} from '@badam/safetensors';
import * as tf from '@tensorflow/tfjs-core';
import { type EncoderConfig, encoderConfigFromHf, encoderConfigToHf } from '../encoder/encoder-config.js';
import { EncoderClassifier, type EncoderModelOptions } from '../encoder/encoder-model.js';
import { readConfigJson } from './config-json.js';
import { checkFiniteWeight } from './finite-weights.js';

/** What {@link loadEncoder} returns. */
export interface LoadedEncoder {
  readonly model: EncoderClassifier;
  readonly config: EncoderConfig;
  /** Tensors of the checkpoint the model does not use (e.g. a masked-LM head when fine-tuning a classifier). */
  readonly unusedTensors: readonly string[];
  /** Parameters the checkpoint does not have, left randomly initialised (the new task head, as transformers warns). */
  readonly newlyInitialized: readonly string[];
}

/** Options of {@link loadEncoder}. */
export interface LoadEncoderOptions extends EncoderModelOptions {
  /** The head to fine-tune; default: the one config.json's `architectures` names. */
  head?: Extract<EncoderHead, 'sequence-classification' | 'multiple-choice'>;
  /** Classes of a sequence-classification head. */
  numLabels?: number;
}

/**
 * Loads a RoBERTa or BERT encoder from a local Hugging Face directory (config.json and safetensors, single
 * or sharded) as a classifier. Like transformers' `from_pretrained`, parameters the checkpoint lacks — a
 * task head on a pretrained `…ForMaskedLM` — stay randomly initialised and are listed in `newlyInitialized`;
 * an encoder tensor that is missing or of the wrong shape is an error naming it.
 */
export async function loadEncoder(
  directory: string,
  options: LoadEncoderOptions = {},
): Promise<LoadedEncoder> {
  const { json, path } = await readConfigJson(directory);
  const config = encoderConfigFromHf(json, {
    source: path,
    head:
      options.head ?? (headOf(json) === 'multiple-choice' ? 'multiple-choice' : 'sequence-classification'),
    ...(options.numLabels !== undefined ? { numLabels: options.numLabels } : {}),
  });
  const weights = await SafetensorsModel.open(directory);
  const model = new EncoderClassifier(config, options);
  try {
    const newlyInitialized: string[] = [];
    const used = new Set<string>();
    const head = new Set(model.headParameterNames);
    for (const [name, variable] of model.namedParameters) {
      // Checkpoints saved by `…Model` have no `roberta.` prefix.
      const stored = weights.has(name)
        ? name
        : weights.has(name.replace(/^(roberta|bert)\./, ''))
          ? name.replace(/^(roberta|bert)\./, '')
          : undefined;
      if (stored === undefined) {
        if (head.has(name)) {
          newlyInitialized.push(name);
          continue;
        }
        throw new SafetensorsError(
          directory,
          `missing tensor ${JSON.stringify(name)}, which config.json's architecture needs`,
        );
      }
      const shape = weights.shapeOf(stored);
      if (shape.join(',') !== variable.shape.join(',')) {
        if (head.has(name)) {
          newlyInitialized.push(name); // a head for another number of labels: start afresh, as transformers' ignore_mismatched_sizes
          continue;
        }
        throw new SafetensorsError(
          directory,
          `tensor ${stored} has shape [${shape.join(', ')}], config.json implies [${variable.shape.join(', ')}]`,
        );
      }
      const values = await weights.readFloat32(stored);
      checkFiniteWeight(directory, stored, values);
      tf.tidy(() => variable.assign(tf.tensor(values, variable.shape, 'float32')));
      used.add(stored);
    }
    return { model, config, unusedTensors: weights.names().filter((n) => !used.has(n)), newlyInitialized };
  } catch (error) {
    model.dispose();
    throw error;
  } finally {
    await weights.close();
  }
}

function headOf(json: unknown): string | undefined {
  const first = (json as { architectures?: unknown }).architectures;
  return Array.isArray(first) && typeof first[0] === 'string' && first[0].endsWith('ForMultipleChoice')
    ? 'multiple-choice'
    : undefined;
}

/** The model's weights as named arrays (LoRA adapters excluded). */
export function encoderWeights(
  model: EncoderClassifier,
  dtype: 'float32' | 'bfloat16' = 'float32',
): NamedArray[] {
  return model.namedParameters
    .filter(([name]) => !isLoraParameter(name))
    .map(([name, variable]) => {
      const values = variable.dataSync() as Float32Array;
      return {
        name,
        dtype,
        shape: [...variable.shape],
        data: dtype === 'bfloat16' ? float32ToBfloat16(values) : Float32Array.from(values),
      };
    });
}

/** Saves the classifier in Hugging Face's format: config.json and model.safetensors, written atomically. */
export async function saveEncoder(
  model: EncoderClassifier,
  directory: string,
  options: { dtype?: 'float32' | 'bfloat16' } = {},
): Promise<string[]> {
  if (model.lora !== undefined)
    throw new BadamOptionError(
      'model',
      'with LoRA adapters',
      'a model without adapters (save them separately)',
    );
  const dtype = options.dtype ?? 'float32';
  const files = await writeSafetensorsModel(directory, encoderWeights(model, dtype));
  await writeFileAtomic(join(directory, 'config.json'), [
    `${JSON.stringify({ ...encoderConfigToHf(model.config), torch_dtype: dtype }, null, 2)}\n`,
  ]);
  return ['config.json', ...files];
}
