import type { DType } from '../dtype.js';

/** Transformer families core can describe from a Hugging Face config.json. */
export type ModelFamily = 'llama' | 'mistral' | 'qwen2' | 'roberta' | 'bert';

/** A decoder-only causal LM of the Llama family (Llama 2/3, Mistral, Qwen2, TinyLlama, ...). */
export interface DecoderArchitecture {
  readonly kind: 'decoder';
  readonly family: 'llama' | 'mistral' | 'qwen2';
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly numKeyValueHeads: number;
  readonly headDim: number;
  readonly maxPositionEmbeddings: number;
  /** `lm_head` shares the embedding matrix (then it is not a parameter of its own). */
  readonly tieWordEmbeddings: boolean;
  /** q, k, v projections have biases (Qwen2, or Llama's `attention_bias`). */
  readonly qkvBias: boolean;
  /** o projection has a bias (Llama's `attention_bias`). */
  readonly outputBias: boolean;
  /** gate, up, down projections have biases (Llama's `mlp_bias`). */
  readonly mlpBias: boolean;
  /** `torch_dtype` of the checkpoint, when config.json states it. */
  readonly dtype?: DType;
}

/** What sits on top of an encoder: nothing (bare model with pooler), an MLM head, or a task head. */
export type EncoderHead = 'model' | 'masked-lm' | 'sequence-classification' | 'multiple-choice';

/** A BERT-style encoder (BERT, RoBERTa). */
export interface EncoderArchitecture {
  readonly kind: 'encoder';
  readonly family: 'roberta' | 'bert';
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly maxPositionEmbeddings: number;
  readonly typeVocabSize: number;
  readonly head: EncoderHead;
  /** Labels of a sequence-classification head. */
  readonly numLabels: number;
  readonly dtype?: DType;
}

/** A model architecture parsed from a Hugging Face config.json: enough to list its parameters. */
export type ModelArchitecture = DecoderArchitecture | EncoderArchitecture;
