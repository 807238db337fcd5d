/**
 * What a parameter's name says about its role: which layer it belongs to, whether it is an embedding, a
 * normalisation weight or a bias. These are the name rules BAdam's partition and weight-decay rule rest on.
 */

/**
 * The repeated-layer containers we recognise, each followed by `.<index>.`: `layers` (Llama, Mistral, Qwen,
 * most decoders), `layer` (BERT / RoBERTa `encoder.layer.<i>.`), `h` (GPT-2, Falcon, BLOOM), `blocks` and
 * `block` (ViT-style and T5-style stacks). The container must be a whole name segment, so
 * `model.layers.1.` never matches inside `model.layers.10.`.
 */
const LAYER_PREFIX = /^(.*?(?:^|\.)(?:layers|layer|h|blocks|block)\.\d+\.)/;

/** A segment containing `embed` (`embed_tokens`, `embeddings`, `word_embeddings`) or GPT-2's `wte` / `wpe`. */
const EMBEDDING_PREFIX = /^(.*?(?:^|\.)(?:[^.]*embed[^.]*|wte|wpe)\.)/;

/** A module segment that is a normalisation layer: `norm`, `input_layernorm`, `LayerNorm`, `ln_1`, `ln_f`, `q_norm`. */
const NORM_SEGMENT = /norm|^ln(?:_|\d|$)/i;

/** peft wraps a linear layer in these sub-modules; the matrix they belong to is the segment before them. */
const PEFT_WRAPPER_SEGMENTS = new Set([
  'base_layer',
  'lora_A',
  'lora_B',
  'lora_embedding_A',
  'lora_embedding_B',
  'lora_magnitude_vector',
]);

/**
 * The layer prefix of a parameter, up to and including the layer index and its dot
 * (`model.layers.0.self_attn.q_proj.weight` gives `model.layers.0.`), or `undefined` when the
 * parameter is not inside a repeated layer. The outermost match wins.
 */
export function layerPrefixOf(name: string): string | undefined {
  return LAYER_PREFIX.exec(name)?.[1];
}

/**
 * The embedding-module prefix of a parameter (`model.embed_tokens.weight` gives `model.embed_tokens.`,
 * `roberta.embeddings.LayerNorm.weight` gives `roberta.embeddings.`), or `undefined`. The outermost
 * matching segment wins, so every parameter of RoBERTa's embedding module shares one prefix.
 */
export function embeddingPrefixOf(name: string): string | undefined {
  return EMBEDDING_PREFIX.exec(name)?.[1];
}

/** True when the module segment is a normalisation layer (see {@link isNoDecayParameter}). */
export function isNormSegment(segment: string): boolean {
  return NORM_SEGMENT.test(segment);
}

/**
 * True when AdamW's decoupled weight decay must skip this parameter: biases and the weights of
 * normalisation layers (as Hugging Face's Trainer and the BAdam reference do).
 *
 * @example
 * ```ts
 * isNoDecayParameter('model.layers.0.input_layernorm.weight'); // true
 * isNoDecayParameter('model.layers.0.self_attn.q_proj.bias'); // true
 * isNoDecayParameter('model.layers.0.self_attn.q_proj.weight'); // false
 * ```
 */
export function isNoDecayParameter(name: string): boolean {
  const segments = name.split('.');
  const leaf = segments[segments.length - 1] ?? '';
  if (leaf === 'bias' || leaf.endsWith('_bias')) return true;
  const owner = segments[segments.length - 2];
  return owner !== undefined && isNormSegment(owner);
}

/**
 * True for a LoRA adapter parameter, in LoRA mode's sense: the name contains `lora` (peft's `lora_A`,
 * `lora_B`, ...). The one test of "is this an adapter" every package uses.
 */
export function isLoraParameter(name: string): boolean {
  return name.includes('lora');
}

/**
 * The module a LoRA adapter parameter adapts, with a trailing dot (`...q_proj.lora_A.default.weight` gives
 * `...q_proj.`), or `undefined` for a parameter that is not an adapter. The adapted weight is the module's
 * `weight` (or peft's `base_layer.weight`): {@link owningModuleOf} of either gives the same module.
 */
export function loraAdaptedModuleOf(name: string): string | undefined {
  return isLoraParameter(name) ? owningModuleOf(name) : undefined;
}

/**
 * The module that owns a parameter, with a trailing dot: the name without its last segment, and for
 * peft-wrapped layers without the wrapper (`...q_proj.lora_A.default.weight` gives `...q_proj.`).
 */
export function owningModuleOf(name: string): string {
  const segments = name.split('.');
  segments.pop();
  const wrapper = segments.findIndex((s) => PEFT_WRAPPER_SEGMENTS.has(s));
  const kept = wrapper >= 0 ? segments.slice(0, wrapper) : segments;
  return kept.length === 0 ? '' : `${kept.join('.')}.`;
}
