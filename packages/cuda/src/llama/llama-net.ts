import { type LlamaConfig, ropeInverseFrequencies, ropeTables } from '@badam/core';
import type { Device } from '../device.js';
import type { DeviceTensor } from '../device-tensor.js';

/** The floating-point dtypes of a DeviceLlama's weights and activations. */
export type DeviceLlamaDType = 'bfloat16' | 'float16' | 'float32';

/** A linear layer's weight [out, in] and optional bias [out], under its Hugging Face module name. */
export interface Linear {
  readonly name: string;
  readonly weight: DeviceTensor;
  readonly bias: DeviceTensor | null;
}

/** One decoder layer's weights. */
export interface Layer {
  readonly index: number;
  readonly q: Linear;
  readonly k: Linear;
  readonly v: Linear;
  readonly o: Linear;
  readonly gate: Linear;
  readonly up: Linear;
  readonly down: Linear;
  readonly inputNorm: DeviceTensor;
  readonly postNorm: DeviceTensor;
  readonly inputNormName: string;
  readonly postNormName: string;
}

/**
 * What the forward, backward and loss functions of a DeviceLlama read: the device, the config, the weights
 * by role and the RoPE tables. Built once by the model ({@link buildLlamaNet}); the tensors are the model's.
 *
 * The weights of q, k and v are consecutive views of one allocation ([Q + 2 KV, H]), as are those of gate
 * and up ([2 I, H]) and their biases: the model's loader stores them so (llama-loading.ts), and the step
 * multiplies by each group with one GEMM through a view over the group (the step's views, freed with it).
 */
export interface LlamaNet {
  readonly device: Device;
  readonly config: LlamaConfig;
  readonly dtype: DeviceLlamaDType;
  readonly gradientCheckpointing: boolean;
  readonly lossChunkTokens: number;
  readonly maxPositions: number;
  readonly layers: readonly Layer[];
  readonly embed: DeviceTensor;
  readonly norm: DeviceTensor;
  /** Null when the head is tied to the embedding. */
  readonly lmHead: DeviceTensor | null;
  /** fp32 [maxPositions, headDim / 2] RoPE tables. */
  readonly cos: DeviceTensor;
  readonly sin: DeviceTensor;
}

/** The sizes a layer's step works with: hidden H, q width Q, k / v width KV, fused qkv width, intermediate I. */
export interface LayerSizes {
  readonly H: number;
  readonly Q: number;
  readonly KV: number;
  /** Q + 2 KV: a token's row of the fused q / k / v projection. */
  readonly W3: number;
  readonly I: number;
}

export function layerSizes(config: LlamaConfig): LayerSizes {
  const Q = config.numHeads * config.headDim;
  const KV = config.numKeyValueHeads * config.headDim;
  return { H: config.hiddenSize, Q, KV, W3: Q + 2 * KV, I: config.intermediateSize };
}

/** Options that shape a {@link LlamaNet} (resolved from DeviceLlamaOptions). */
export interface LlamaNetOptions {
  readonly dtype: DeviceLlamaDType;
  readonly gradientCheckpointing: boolean;
  readonly maxPositions: number;
  readonly lossChunkTokens: number;
}

/** The net over `weights` (every parameter of `config` by name); allocates the RoPE tables. */
export function buildLlamaNet(
  device: Device,
  config: LlamaConfig,
  weights: ReadonlyMap<string, DeviceTensor>,
  options: LlamaNetOptions,
): LlamaNet {
  const w = (name: string) => weights.get(name)!;
  const linear = (name: string): Linear => ({
    name,
    weight: w(`${name}.weight`),
    bias: weights.get(`${name}.bias`) ?? null,
  });
  const layers = Array.from({ length: config.numLayers }, (_, index): Layer => {
    const p = `model.layers.${index}`;
    return {
      index,
      q: linear(`${p}.self_attn.q_proj`),
      k: linear(`${p}.self_attn.k_proj`),
      v: linear(`${p}.self_attn.v_proj`),
      o: linear(`${p}.self_attn.o_proj`),
      gate: linear(`${p}.mlp.gate_proj`),
      up: linear(`${p}.mlp.up_proj`),
      down: linear(`${p}.mlp.down_proj`),
      inputNorm: w(`${p}.input_layernorm.weight`),
      postNorm: w(`${p}.post_attention_layernorm.weight`),
      inputNormName: `${p}.input_layernorm.weight`,
      postNormName: `${p}.post_attention_layernorm.weight`,
    };
  });
  const half = config.headDim / 2;
  const tables = ropeTables(
    options.maxPositions,
    ropeInverseFrequencies(config.headDim, config.ropeTheta, config.ropeScaling),
  );
  const cos = device.tensor(tables.cos, [options.maxPositions, half], 'float32', 'other');
  let sin: DeviceTensor;
  try {
    sin = device.tensor(tables.sin, [options.maxPositions, half], 'float32', 'other');
  } catch (error) {
    cos.free();
    throw error;
  }
  return {
    device,
    config,
    ...options,
    layers,
    embed: w('model.embed_tokens.weight'),
    norm: w('model.norm.weight'),
    lmHead: config.tieWordEmbeddings ? null : w('lm_head.weight'),
    cos,
    sin,
  };
}
