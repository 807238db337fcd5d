import { type LlamaConfig, llamaConfigFromHf } from '@badam/core';

/**
 * The built-in tiny Llama of the embedded default, as a Hugging Face config.json: byte vocabulary (259
 * tokens), 4 layers, hidden 96 — about 0.5M parameters, small enough to pretrain and fine-tune on a laptop
 * CPU (or in a browser) in minutes.
 */
export const TINY_LLAMA_CONFIG = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  vocab_size: 259,
  hidden_size: 96,
  intermediate_size: 256,
  num_hidden_layers: 4,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 128,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  tie_word_embeddings: false,
  bos_token_id: 257,
  eos_token_id: 258,
  pad_token_id: 256,
} as const;

/** The built-in tiny Llama's config (the same on every backend). */
export function builtinLlamaConfig(): LlamaConfig {
  return llamaConfigFromHf(TINY_LLAMA_CONFIG, 'built-in tiny Llama');
}

/**
 * The built-in tiny Llama's initialisation range (the normal's standard deviation): with the same seed,
 * every backend starts from the same weights.
 */
export const BUILTIN_INITIALIZER_RANGE = 0.05;
