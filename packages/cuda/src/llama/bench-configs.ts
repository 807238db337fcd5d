/**
 * The GPU benchmark's configs, as Hugging Face config.json fields: the PyTorch peer's (../shared/bench/
 * torch_badam.py CONFIGS) and the dry run's tiny one. The benchmark (bench/llama-train.ts) trains them and the
 * device check times their steps' GEMMs.
 */
export const BENCH_LLAMA_CONFIGS: Readonly<Record<string, Record<string, unknown>>> = {
  'tinyllama-1.1b': {
    hidden_size: 2048,
    intermediate_size: 5632,
    num_hidden_layers: 22,
    num_attention_heads: 32,
    num_key_value_heads: 4,
    vocab_size: 32000,
    max_position_embeddings: 2048,
  },
  'llama3-8b': {
    hidden_size: 4096,
    intermediate_size: 14336,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    vocab_size: 128256,
    max_position_embeddings: 8192,
    rope_theta: 500000.0,
  },
  // The dry run's size: the same code in seconds on the CPU device.
  tiny: {
    hidden_size: 64,
    intermediate_size: 128,
    num_hidden_layers: 3,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    vocab_size: 256,
    max_position_embeddings: 64,
  },
};
