/**
 * @badam/models — models for BAdam on TensorFlow.js with Hugging Face parameter names: Llama-family causal
 * LMs (Llama 2/3, Mistral, Qwen2, TinyLlama) with RoPE, grouped-query attention, SwiGLU, LoRA and gradient
 * checkpointing; BERT-style encoders (RoBERTa, BERT) with classification and multiple-choice heads; Hugging
 * Face checkpoints in and out; text generation; and the causal-LM training task @badam/tfjs's trainer takes.
 *
 * @packageDocumentation
 */

// The config and RoPE math are tensor-free and live in @badam/core (so @badam/cuda shares them without tfjs).
export {
  type LlamaConfig,
  llamaConfigFromHf,
  llamaConfigToHf,
  type RopeScaling,
  ropeInverseFrequencies,
  ropeTables,
} from '@badam/core';
export { type EncoderConfig, encoderConfigFromHf, encoderConfigToHf } from './encoder/encoder-config.js';
export { type EncoderBatch, EncoderClassifier, type EncoderModelOptions } from './encoder/encoder-model.js';
export { type GenerationOptions, generate } from './generation/generate.js';
export { readConfigJson } from './hf/config-json.js';
export {
  encoderWeights,
  type LoadEncoderOptions,
  type LoadedEncoder,
  loadEncoder,
  saveEncoder,
} from './hf/encoder-checkpoint.js';
export {
  assignLlamaWeights,
  type LlamaWeightSource,
  type LoadedLlama,
  llamaWeights,
  loadLlama,
  readLlamaConfig,
  type SaveLlamaOptions,
  saveLlama,
  saveLoraAdapter,
} from './hf/llama-checkpoint.js';
export {
  ADAPTER_CONFIG,
  ADAPTER_WEIGHTS,
  type LoraAdapterConfig,
  loadLoraAdapter,
  readLoraAdapterConfig,
} from './hf/lora-checkpoint.js';
export {
  SHIPPED_LLAMA_CONFIGS,
  type ShippedLlamaName,
  shippedLlamaConfig,
} from './hf/shipped-llama-configs.js';
export { causalLmTask, type PaddedTokenBatch } from './llama/causal-lm-task.js';
export {
  type CausalLmBatch,
  LLAMA_LORA_TARGETS,
  LlamaForCausalLM,
  type LlamaModelOptions,
  type LoraConfig,
} from './llama/llama-model.js';
export { IGNORE_INDEX, maskedCrossEntropy } from './ops/cross-entropy.js';
export { embeddingLookup } from './ops/embedding.js';
export { layerNorm } from './ops/layer-norm.js';
export { rmsNorm } from './ops/rms-norm.js';
