/**
 * Hugging Face config.json contents of published models, built in so the estimator (and the project's main
 * job before the runners land) works without any download. Values as in each model's config.json on the hub.
 */
export const BUILTIN_CONFIGS = {
  'llama3-8b': {
    label: 'Llama 3-8B',
    config: {
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      vocab_size: 128256,
      hidden_size: 4096,
      intermediate_size: 14336,
      num_hidden_layers: 32,
      num_attention_heads: 32,
      num_key_value_heads: 8,
      max_position_embeddings: 8192,
      rope_theta: 500000.0,
      rms_norm_eps: 1e-5,
      tie_word_embeddings: false,
      torch_dtype: 'bfloat16',
    },
  },
  'llama2-7b': {
    label: 'Llama 2-7B',
    config: {
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      vocab_size: 32000,
      hidden_size: 4096,
      intermediate_size: 11008,
      num_hidden_layers: 32,
      num_attention_heads: 32,
      num_key_value_heads: 32,
      max_position_embeddings: 4096,
      rms_norm_eps: 1e-5,
      tie_word_embeddings: false,
      torch_dtype: 'float16',
    },
  },
  'tinyllama-1.1b': {
    label: 'TinyLlama-1.1B',
    config: {
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      vocab_size: 32000,
      hidden_size: 2048,
      intermediate_size: 5632,
      num_hidden_layers: 22,
      num_attention_heads: 32,
      num_key_value_heads: 4,
      max_position_embeddings: 2048,
      rms_norm_eps: 1e-5,
      tie_word_embeddings: false,
      torch_dtype: 'bfloat16',
    },
  },
  'mistral-7b': {
    label: 'Mistral-7B-v0.1',
    config: {
      architectures: ['MistralForCausalLM'],
      model_type: 'mistral',
      vocab_size: 32000,
      hidden_size: 4096,
      intermediate_size: 14336,
      num_hidden_layers: 32,
      num_attention_heads: 32,
      num_key_value_heads: 8,
      max_position_embeddings: 32768,
      rope_theta: 10000.0,
      tie_word_embeddings: false,
      torch_dtype: 'bfloat16',
    },
  },
  'qwen2-0.5b': {
    label: 'Qwen2-0.5B',
    config: {
      architectures: ['Qwen2ForCausalLM'],
      model_type: 'qwen2',
      vocab_size: 151936,
      hidden_size: 896,
      intermediate_size: 4864,
      num_hidden_layers: 24,
      num_attention_heads: 14,
      num_key_value_heads: 2,
      max_position_embeddings: 131072,
      rope_theta: 1000000.0,
      tie_word_embeddings: true,
      torch_dtype: 'bfloat16',
    },
  },
  'qwen2-7b': {
    label: 'Qwen2-7B',
    config: {
      architectures: ['Qwen2ForCausalLM'],
      model_type: 'qwen2',
      vocab_size: 152064,
      hidden_size: 3584,
      intermediate_size: 18944,
      num_hidden_layers: 28,
      num_attention_heads: 28,
      num_key_value_heads: 4,
      max_position_embeddings: 131072,
      rope_theta: 1000000.0,
      tie_word_embeddings: false,
      torch_dtype: 'bfloat16',
    },
  },
  'roberta-large': {
    label: 'RoBERTa-large',
    config: {
      architectures: ['RobertaForMaskedLM'],
      model_type: 'roberta',
      vocab_size: 50265,
      hidden_size: 1024,
      intermediate_size: 4096,
      num_hidden_layers: 24,
      num_attention_heads: 16,
      max_position_embeddings: 514,
      type_vocab_size: 1,
      pad_token_id: 1,
      layer_norm_eps: 1e-5,
    },
  },
} as const satisfies Record<string, { label: string; config: Record<string, unknown> }>;

/** Names of the built-in configs (`badam-estimate --model <name>`). */
export type BuiltinModelName = keyof typeof BUILTIN_CONFIGS;

/** All built-in config names. */
export const BUILTIN_MODEL_NAMES = Object.keys(BUILTIN_CONFIGS) as BuiltinModelName[];
