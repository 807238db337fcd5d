/**
 * The config.json of three real Llama-family models, shipped so that they train from scratch anywhere (random
 * weights, as LLaMA-Factory's `train_from_scratch: true`) without a model hub: the files exactly as their
 * Hugging Face repositories publish them (no weights, no tokenizer).
 */
export const SHIPPED_LLAMA_CONFIGS = {
  'smollm-135m': {
    hubId: 'HuggingFaceTB/SmolLM-135M',
    config: {
      architectures: ['LlamaForCausalLM'],
      attention_bias: false,
      attention_dropout: 0.0,
      bos_token_id: 0,
      eos_token_id: 0,
      hidden_act: 'silu',
      hidden_size: 576,
      initializer_range: 0.02,
      intermediate_size: 1536,
      max_position_embeddings: 2048,
      model_type: 'llama',
      num_attention_heads: 9,
      num_hidden_layers: 30,
      num_key_value_heads: 3,
      pretraining_tp: 1,
      rms_norm_eps: 1e-5,
      rope_scaling: null,
      rope_theta: 10000.0,
      tie_word_embeddings: true,
      torch_dtype: 'float32',
      transformers_version: '4.40.1',
      use_cache: true,
      vocab_size: 49152,
    },
  },
  'qwen2.5-0.5b': {
    hubId: 'Qwen/Qwen2.5-0.5B',
    config: {
      architectures: ['Qwen2ForCausalLM'],
      attention_dropout: 0.0,
      bos_token_id: 151643,
      eos_token_id: 151643,
      hidden_act: 'silu',
      hidden_size: 896,
      initializer_range: 0.02,
      intermediate_size: 4864,
      max_position_embeddings: 32768,
      max_window_layers: 24,
      model_type: 'qwen2',
      num_attention_heads: 14,
      num_hidden_layers: 24,
      num_key_value_heads: 2,
      rms_norm_eps: 1e-6,
      rope_theta: 1000000.0,
      sliding_window: 32768,
      tie_word_embeddings: true,
      torch_dtype: 'bfloat16',
      transformers_version: '4.40.1',
      use_cache: true,
      use_mrope: false,
      use_sliding_window: false,
      vocab_size: 151936,
    },
  },
  'tinyllama-1.1b': {
    hubId: 'TinyLlama/TinyLlama_v1.1',
    config: {
      architectures: ['LlamaForCausalLM'],
      attention_bias: false,
      bos_token_id: 1,
      eos_token_id: 2,
      hidden_act: 'silu',
      hidden_size: 2048,
      initializer_range: 0.02,
      intermediate_size: 5632,
      max_position_embeddings: 2048,
      model_type: 'llama',
      num_attention_heads: 32,
      num_hidden_layers: 22,
      num_key_value_heads: 4,
      pretraining_tp: 1,
      rms_norm_eps: 1e-5,
      rope_scaling: null,
      rope_theta: 10000.0,
      tie_word_embeddings: false,
      torch_dtype: 'float32',
      transformers_version: '4.31.0.dev0',
      use_cache: true,
      vocab_size: 32000,
    },
  },
} as const satisfies Readonly<Record<string, { hubId: string; config: Record<string, unknown> }>>;

/** A name of {@link SHIPPED_LLAMA_CONFIGS}. */
export type ShippedLlamaName = keyof typeof SHIPPED_LLAMA_CONFIGS;

/**
 * The shipped config.json of `name` (`smollm-135m`, `qwen2.5-0.5b`, `tinyllama-1.1b`) or of its Hugging Face
 * id (`HuggingFaceTB/SmolLM-135M`, case-insensitive), as a fresh object; undefined when it is neither.
 *
 * @example
 * ```ts
 * const config = llamaConfigFromHf(shippedLlamaConfig('smollm-135m')!); // hidden 576, 30 layers, GQA 9/3
 * ```
 */
export function shippedLlamaConfig(name: string): Record<string, unknown> | undefined {
  const wanted = name.trim().toLowerCase();
  for (const [key, entry] of Object.entries(SHIPPED_LLAMA_CONFIGS)) {
    if (key === wanted || entry.hubId.toLowerCase() === wanted) return structuredClone(entry.config);
  }
  return undefined;
}
