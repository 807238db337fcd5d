import { BadamOptionError, type EncoderArchitecture, type EncoderHead, parseHfConfig } from '@badam/core';

/** Everything a BERT-style encoder (RoBERTa, BERT) needs from its config.json. */
export interface EncoderConfig extends Omit<EncoderArchitecture, 'kind'> {
  readonly layerNormEps: number;
  /** `hidden_act`: `gelu` (erf, as Hugging Face), `gelu_new` (tanh approximation) or `relu`. */
  readonly hiddenAct: 'gelu' | 'gelu_new' | 'relu';
  readonly hiddenDropout: number;
  readonly attentionDropout: number;
  /** Padding id; RoBERTa's positions start at padTokenId + 1. */
  readonly padTokenId: number;
  readonly bosTokenId: number | undefined;
  readonly eosTokenId: number | undefined;
  /** Label names of a classification head, by index (config.json `id2label`). */
  readonly id2label: readonly string[] | undefined;
}

/**
 * Reads a RoBERTa or BERT config.json. `head` overrides the head the `architectures` field names (e.g. a
 * pretrained `RobertaForMaskedLM` checkpoint fine-tuned as `sequence-classification`); `numLabels` sets the
 * classification head's width.
 */
export function encoderConfigFromHf(
  json: unknown,
  options: { source?: string; head?: EncoderHead; numLabels?: number } = {},
): EncoderConfig {
  const source = options.source ?? 'config.json';
  const architecture = parseHfConfig(json, { source, ...(options.head ? { head: options.head } : {}) });
  if (architecture.kind !== 'encoder') {
    throw new BadamOptionError(
      `${source} model_type`,
      (json as { model_type?: unknown }).model_type,
      'an encoder (roberta, bert)',
    );
  }
  const config = json as Record<string, unknown>;
  const fraction = (field: string, fallback: number) => {
    const value = config[field] ?? fallback;
    if (typeof value !== 'number' || !(value >= 0 && value < 1))
      throw new BadamOptionError(`${source} ${field}`, value, 'a number in [0, 1)');
    return value;
  };
  const act = config.hidden_act ?? 'gelu';
  if (act !== 'gelu' && act !== 'gelu_new' && act !== 'relu') {
    throw new BadamOptionError(`${source} hidden_act`, act, '"gelu", "gelu_new" or "relu"');
  }
  const eps = config.layer_norm_eps ?? (architecture.family === 'roberta' ? 1e-5 : 1e-12);
  if (typeof eps !== 'number' || !(eps > 0))
    throw new BadamOptionError(`${source} layer_norm_eps`, eps, 'a positive number');
  const id = (field: string, fallback: number | undefined) => {
    const value = config[field] ?? fallback;
    if (value === undefined || value === null) return undefined;
    if (!Number.isSafeInteger(value) || (value as number) < 0)
      throw new BadamOptionError(`${source} ${field}`, value, 'a token id');
    return value as number;
  };
  const { kind: _, ...rest } = architecture;
  const numLabels = options.numLabels ?? rest.numLabels;
  if (!Number.isSafeInteger(numLabels) || numLabels < 1)
    throw new BadamOptionError('numLabels', numLabels, 'an integer >= 1');
  const labels = config.id2label as Record<string, string> | undefined;
  const id2label =
    labels && typeof labels === 'object' && Object.keys(labels).length === numLabels
      ? Array.from({ length: numLabels }, (_, i) => String(labels[String(i)] ?? `LABEL_${i}`))
      : undefined;
  return {
    ...rest,
    numLabels,
    layerNormEps: eps,
    hiddenAct: act,
    hiddenDropout: fraction('hidden_dropout_prob', 0.1),
    attentionDropout: fraction('attention_probs_dropout_prob', 0.1),
    padTokenId: id('pad_token_id', architecture.family === 'roberta' ? 1 : 0)!,
    bosTokenId: id('bos_token_id', undefined),
    eosTokenId: id('eos_token_id', undefined),
    id2label,
  };
}

/** The config.json Hugging Face's loaders expect for `config` (written next to saved weights). */
export function encoderConfigToHf(config: EncoderConfig): Record<string, unknown> {
  const family = config.family === 'roberta' ? 'Roberta' : 'Bert';
  const architectures = {
    model: `${family}Model`,
    'masked-lm': `${family}ForMaskedLM`,
    'sequence-classification': `${family}ForSequenceClassification`,
    'multiple-choice': `${family}ForMultipleChoice`,
  }[config.head];
  const labels = config.id2label ?? Array.from({ length: config.numLabels }, (_, i) => `LABEL_${i}`);
  return {
    architectures: [architectures],
    model_type: config.family,
    vocab_size: config.vocabSize,
    hidden_size: config.hiddenSize,
    intermediate_size: config.intermediateSize,
    num_hidden_layers: config.numLayers,
    num_attention_heads: config.numHeads,
    max_position_embeddings: config.maxPositionEmbeddings,
    type_vocab_size: config.typeVocabSize,
    layer_norm_eps: config.layerNormEps,
    hidden_act: config.hiddenAct,
    hidden_dropout_prob: config.hiddenDropout,
    attention_probs_dropout_prob: config.attentionDropout,
    pad_token_id: config.padTokenId,
    ...(config.bosTokenId !== undefined ? { bos_token_id: config.bosTokenId } : {}),
    ...(config.eosTokenId !== undefined ? { eos_token_id: config.eosTokenId } : {}),
    id2label: Object.fromEntries(labels.map((l, i) => [String(i), l])),
    label2id: Object.fromEntries(labels.map((l, i) => [l, i])),
  };
}
