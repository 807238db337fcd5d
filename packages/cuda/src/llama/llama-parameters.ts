import { type LlamaConfig, SeededRandom } from '@badam/core';

/** One parameter of a Llama-family model: Hugging Face name, shape, and how LlamaForCausalLM initialises it. */
export interface LlamaParameterSpec {
  readonly name: string;
  readonly shape: readonly [number] | readonly [number, number];
  readonly init: 'normal' | 'ones' | 'zeros';
}

/** The linear layers of a decoder layer, in named_parameters() order. */
export const LLAMA_LINEARS = [
  'self_attn.q_proj',
  'self_attn.k_proj',
  'self_attn.v_proj',
  'self_attn.o_proj',
  'mlp.gate_proj',
  'mlp.up_proj',
  'mlp.down_proj',
] as const;

/**
 * The parameters of `config` in Hugging Face's `named_parameters()` order, exactly as @badam/models'
 * LlamaForCausalLM lists them (tied `lm_head` left out: it is the embedding).
 */
export function llamaParameterSpecs(config: LlamaConfig): LlamaParameterSpec[] {
  const h = config.hiddenSize;
  const q = config.numHeads * config.headDim;
  const kv = config.numKeyValueHeads * config.headDim;
  const i = config.intermediateSize;
  const specs: LlamaParameterSpec[] = [
    { name: 'model.embed_tokens.weight', shape: [config.vocabSize, h], init: 'normal' },
  ];
  const linear = (name: string, out: number, inp: number, bias: boolean) => {
    specs.push({ name: `${name}.weight`, shape: [out, inp], init: 'normal' });
    if (bias) specs.push({ name: `${name}.bias`, shape: [out], init: 'zeros' });
  };
  for (let l = 0; l < config.numLayers; l++) {
    const p = `model.layers.${l}`;
    linear(`${p}.self_attn.q_proj`, q, h, config.qkvBias);
    linear(`${p}.self_attn.k_proj`, kv, h, config.qkvBias);
    linear(`${p}.self_attn.v_proj`, kv, h, config.qkvBias);
    linear(`${p}.self_attn.o_proj`, h, q, config.outputBias);
    linear(`${p}.mlp.gate_proj`, i, h, config.mlpBias);
    linear(`${p}.mlp.up_proj`, i, h, config.mlpBias);
    linear(`${p}.mlp.down_proj`, h, i, config.mlpBias);
    specs.push({ name: `${p}.input_layernorm.weight`, shape: [h], init: 'ones' });
    specs.push({ name: `${p}.post_attention_layernorm.weight`, shape: [h], init: 'ones' });
  }
  specs.push({ name: 'model.norm.weight', shape: [h], init: 'ones' });
  if (!config.tieWordEmbeddings)
    specs.push({ name: 'lm_head.weight', shape: [config.vocabSize, h], init: 'normal' });
  return specs;
}

/** A standard normal sample by Box-Muller: the same draws as @badam/models' `gaussian`, so the same weights. */
function gaussian(rng: SeededRandom): number {
  const u = 1 - rng.nextFloat();
  const v = rng.nextFloat();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

/**
 * LlamaForCausalLM's random initialisation, parameter by parameter in model order (one generator, the
 * same draw order): matrices N(0, initializerRange^2), norms 1, biases 0. `visit` receives each fp32
 * array as it is drawn, so that only one parameter's values are on the host at a time.
 */
export function forEachInitialLlamaParameter(
  config: LlamaConfig,
  options: { seed?: number; initializerRange?: number },
  visit: (spec: LlamaParameterSpec, values: Float32Array) => void,
): void {
  const rng = SeededRandom.fromSeed(options.seed ?? 0);
  const std = options.initializerRange ?? 0.02;
  for (const spec of llamaParameterSpecs(config)) {
    const size = spec.shape.reduce((a, b) => a * b, 1);
    const values = new Float32Array(size);
    if (spec.init === 'ones') values.fill(1);
    else if (spec.init === 'normal') for (let j = 0; j < size; j++) values[j] = std * gaussian(rng);
    visit(spec, values);
  }
}
