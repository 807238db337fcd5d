import { BadamOptionError } from '../errors.js';
import type { DecoderArchitecture } from './model-architecture.js';
import { parseHfConfig } from './parse-hf-config.js';

/** How RoPE frequencies are rescaled for long contexts (config.json `rope_scaling`). */
export type RopeScaling =
  | {
      readonly type: 'llama3';
      readonly factor: number;
      readonly lowFreqFactor: number;
      readonly highFreqFactor: number;
      readonly originalMaxPositionEmbeddings: number;
    }
  | { readonly type: 'linear'; readonly factor: number };

/** Everything a Llama-family model (Llama 2/3, Mistral, Qwen2, TinyLlama) needs from its config.json. */
export interface LlamaConfig extends Omit<DecoderArchitecture, 'kind'> {
  readonly rmsNormEps: number;
  readonly ropeTheta: number;
  readonly ropeScaling: RopeScaling | undefined;
  readonly bosTokenId: number | undefined;
  readonly eosTokenId: number | readonly number[] | undefined;
  readonly padTokenId: number | undefined;
}

/**
 * Reads a Llama-family config.json (model_type llama, mistral or qwen2): the architecture (via core's
 * `parseHfConfig`), RMSNorm epsilon, RoPE theta and scaling (`llama3` and `linear`), special token ids.
 */
export function llamaConfigFromHf(json: unknown, source = 'config.json'): LlamaConfig {
  const architecture = parseHfConfig(json, { source });
  if (architecture.kind !== 'decoder') {
    throw new BadamOptionError(
      `${source} model_type`,
      (json as { model_type?: unknown }).model_type,
      'a decoder (llama, mistral, qwen2)',
    );
  }
  const config = json as Record<string, unknown>;
  const number = (field: string, fallback: number) => {
    const value = config[field] ?? fallback;
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
      throw new BadamOptionError(`${source} ${field}`, value, 'a positive number');
    }
    return value;
  };
  const tokenId = (field: string) => {
    const value = config[field];
    if (value === undefined || value === null) return undefined;
    if (Number.isSafeInteger(value)) return value as number;
    if (Array.isArray(value) && value.every((v) => Number.isSafeInteger(v))) return value as number[];
    throw new BadamOptionError(`${source} ${field}`, value, 'a token id or a list of token ids');
  };
  const { kind: _, ...rest } = architecture;
  return {
    ...rest,
    rmsNormEps: number('rms_norm_eps', 1e-6),
    ropeTheta: number('rope_theta', 10000),
    ropeScaling: parseRopeScaling(config.rope_scaling, source),
    bosTokenId: tokenId('bos_token_id') as number | undefined,
    eosTokenId: tokenId('eos_token_id'),
    padTokenId: tokenId('pad_token_id') as number | undefined,
  };
}

function parseRopeScaling(value: unknown, source: string): RopeScaling | undefined {
  if (value === undefined || value === null) return undefined;
  const s = value as Record<string, unknown>;
  const type = s.rope_type ?? s.type;
  const factor = s.factor;
  if (typeof factor !== 'number' || !(factor > 0)) {
    throw new BadamOptionError(`${source} rope_scaling.factor`, factor, 'a positive number');
  }
  if (type === 'linear') return { type: 'linear', factor };
  if (type === 'llama3') {
    const get = (k: string) => {
      const v = s[k];
      if (typeof v !== 'number' || !(v > 0))
        throw new BadamOptionError(`${source} rope_scaling.${k}`, v, 'a positive number');
      return v;
    };
    return {
      type: 'llama3',
      factor,
      lowFreqFactor: get('low_freq_factor'),
      highFreqFactor: get('high_freq_factor'),
      originalMaxPositionEmbeddings: get('original_max_position_embeddings'),
    };
  }
  if (type === 'default') return undefined;
  throw new BadamOptionError(
    `${source} rope_scaling.rope_type`,
    type,
    '"llama3", "linear" or "default"',
    'dynamic, yarn and longrope scaling are not supported by @badam/models or @badam/cuda; use a checkpoint with one of these',
  );
}

/** The config.json a Hugging Face loader expects for `config` (written next to saved weights). */
export function llamaConfigToHf(config: LlamaConfig): Record<string, unknown> {
  const architectures = {
    llama: 'LlamaForCausalLM',
    mistral: 'MistralForCausalLM',
    qwen2: 'Qwen2ForCausalLM',
  }[config.family];
  return {
    architectures: [architectures],
    model_type: config.family,
    vocab_size: config.vocabSize,
    hidden_size: config.hiddenSize,
    intermediate_size: config.intermediateSize,
    num_hidden_layers: config.numLayers,
    num_attention_heads: config.numHeads,
    num_key_value_heads: config.numKeyValueHeads,
    head_dim: config.headDim,
    max_position_embeddings: config.maxPositionEmbeddings,
    rms_norm_eps: config.rmsNormEps,
    rope_theta: config.ropeTheta,
    rope_scaling:
      config.ropeScaling === undefined
        ? null
        : config.ropeScaling.type === 'linear'
          ? { rope_type: 'linear', factor: config.ropeScaling.factor }
          : {
              rope_type: 'llama3',
              factor: config.ropeScaling.factor,
              low_freq_factor: config.ropeScaling.lowFreqFactor,
              high_freq_factor: config.ropeScaling.highFreqFactor,
              original_max_position_embeddings: config.ropeScaling.originalMaxPositionEmbeddings,
            },
    tie_word_embeddings: config.tieWordEmbeddings,
    ...(config.family === 'llama' ? { attention_bias: config.qkvBias, mlp_bias: config.mlpBias } : {}),
    hidden_act: 'silu',
    bos_token_id: config.bosTokenId ?? null,
    eos_token_id: config.eosTokenId ?? null,
    pad_token_id: config.padTokenId ?? null,
    torch_dtype: 'float32',
  };
}
