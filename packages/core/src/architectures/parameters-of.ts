import type { DType } from '../dtype.js';
import type { NamedParameterInfo } from '../parameters.js';
import type { DecoderArchitecture, EncoderArchitecture, ModelArchitecture } from './model-architecture.js';

/**
 * The model's named parameters exactly as Hugging Face transformers lists them (`model.named_parameters()`
 * order and names, shapes as `[out_features, in_features]`), each stored as `dtype`. Tied weights appear
 * once, as PyTorch lists them.
 *
 * @example
 * ```ts
 * const params = parametersOf(parseHfConfig(llama3Config), 'bfloat16');
 * params[1]; // { name: 'model.layers.0.self_attn.q_proj.weight', shape: [4096, 4096], dtype: 'bfloat16' }
 * ```
 */
export function parametersOf(architecture: ModelArchitecture, dtype: DType): NamedParameterInfo[] {
  const list: NamedParameterInfo[] = [];
  const add = (name: string, shape: number[]) => list.push({ name, shape, dtype });
  if (architecture.kind === 'decoder') addDecoder(architecture, add);
  else addEncoder(architecture, add);
  return list;
}

type Add = (name: string, shape: number[]) => void;

function addLinear(add: Add, prefix: string, out: number, inp: number, bias: boolean): void {
  add(`${prefix}.weight`, [out, inp]);
  if (bias) add(`${prefix}.bias`, [out]);
}

function addDecoder(a: DecoderArchitecture, add: Add): void {
  const h = a.hiddenSize;
  const q = a.numHeads * a.headDim;
  const kv = a.numKeyValueHeads * a.headDim;
  add('model.embed_tokens.weight', [a.vocabSize, h]);
  for (let i = 0; i < a.numLayers; i++) {
    const l = `model.layers.${i}`;
    addLinear(add, `${l}.self_attn.q_proj`, q, h, a.qkvBias);
    addLinear(add, `${l}.self_attn.k_proj`, kv, h, a.qkvBias);
    addLinear(add, `${l}.self_attn.v_proj`, kv, h, a.qkvBias);
    addLinear(add, `${l}.self_attn.o_proj`, h, q, a.outputBias);
    addLinear(add, `${l}.mlp.gate_proj`, a.intermediateSize, h, a.mlpBias);
    addLinear(add, `${l}.mlp.up_proj`, a.intermediateSize, h, a.mlpBias);
    addLinear(add, `${l}.mlp.down_proj`, h, a.intermediateSize, a.mlpBias);
    add(`${l}.input_layernorm.weight`, [h]);
    add(`${l}.post_attention_layernorm.weight`, [h]);
  }
  add('model.norm.weight', [h]);
  if (!a.tieWordEmbeddings) add('lm_head.weight', [a.vocabSize, h]);
}

function addEncoder(a: EncoderArchitecture, add: Add): void {
  const h = a.hiddenSize;
  const base = a.head === 'model' ? '' : `${a.family}.`;
  const withPooler =
    a.head === 'model' ||
    a.head === 'multiple-choice' ||
    (a.family === 'bert' && a.head === 'sequence-classification');
  const e = `${base}embeddings`;
  add(`${e}.word_embeddings.weight`, [a.vocabSize, h]);
  add(`${e}.position_embeddings.weight`, [a.maxPositionEmbeddings, h]);
  add(`${e}.token_type_embeddings.weight`, [a.typeVocabSize, h]);
  add(`${e}.LayerNorm.weight`, [h]);
  add(`${e}.LayerNorm.bias`, [h]);
  for (let i = 0; i < a.numLayers; i++) {
    const l = `${base}encoder.layer.${i}`;
    addLinear(add, `${l}.attention.self.query`, h, h, true);
    addLinear(add, `${l}.attention.self.key`, h, h, true);
    addLinear(add, `${l}.attention.self.value`, h, h, true);
    addLinear(add, `${l}.attention.output.dense`, h, h, true);
    add(`${l}.attention.output.LayerNorm.weight`, [h]);
    add(`${l}.attention.output.LayerNorm.bias`, [h]);
    addLinear(add, `${l}.intermediate.dense`, a.intermediateSize, h, true);
    addLinear(add, `${l}.output.dense`, h, a.intermediateSize, true);
    add(`${l}.output.LayerNorm.weight`, [h]);
    add(`${l}.output.LayerNorm.bias`, [h]);
  }
  if (withPooler) addLinear(add, `${base}pooler.dense`, h, h, true);
  switch (a.head) {
    case 'model':
      return;
    case 'masked-lm':
      if (a.family === 'roberta') {
        // RobertaLMHead: its own `bias` first (decoder.bias and decoder.weight are tied and listed once).
        add('lm_head.bias', [a.vocabSize]);
        addLinear(add, 'lm_head.dense', h, h, true);
        add('lm_head.layer_norm.weight', [h]);
        add('lm_head.layer_norm.bias', [h]);
      } else {
        add('cls.predictions.bias', [a.vocabSize]);
        addLinear(add, 'cls.predictions.transform.dense', h, h, true);
        add('cls.predictions.transform.LayerNorm.weight', [h]);
        add('cls.predictions.transform.LayerNorm.bias', [h]);
      }
      return;
    case 'sequence-classification':
      if (a.family === 'roberta') {
        addLinear(add, 'classifier.dense', h, h, true);
        addLinear(add, 'classifier.out_proj', a.numLabels, h, true);
      } else {
        addLinear(add, 'classifier', a.numLabels, h, true);
      }
      return;
    case 'multiple-choice':
      addLinear(add, 'classifier', 1, h, true);
      return;
  }
}
