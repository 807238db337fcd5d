import { type DType, parseDType } from '../dtype.js';
import { BadamOptionError } from '../errors.js';
import type {
  DecoderArchitecture,
  EncoderArchitecture,
  EncoderHead,
  ModelArchitecture,
} from './model-architecture.js';

/** `model_type` values of config.json that core understands, and the family each maps to. */
export const SUPPORTED_MODEL_TYPES = {
  llama: 'llama',
  mistral: 'mistral',
  qwen2: 'qwen2',
  roberta: 'roberta',
  'xlm-roberta': 'roberta',
  bert: 'bert',
} as const;

/**
 * The largest value config.json may give each size: far above every published model (Llama 3.1-405B has
 * 126 layers of width 16384; Gemma's vocabulary is 256K; Llama 4 Scout takes 10M positions), and low
 * enough that a mistyped or hostile config.json (`num_hidden_layers: 1e9`) is refused before anything is
 * allocated or counted layer by layer.
 */
export const HF_CONFIG_LIMITS: Readonly<Record<string, number>> = {
  num_hidden_layers: 1024,
  hidden_size: 131_072,
  intermediate_size: 1_048_576,
  num_attention_heads: 1024,
  num_key_value_heads: 1024,
  head_dim: 8192,
  vocab_size: 16_777_216,
  max_position_embeddings: 134_217_728,
  type_vocab_size: 1024,
  num_labels: 1_000_000,
};

/** Options of {@link parseHfConfig}. */
export interface ParseHfConfigOptions {
  /** Where the JSON came from, for error messages. Default `'config.json'`. */
  source?: string;
  /** Encoders: the head to assume instead of the one `architectures[0]` names. */
  head?: EncoderHead;
}

/**
 * Reads the architecture from a parsed Hugging Face `config.json` of the Llama, Mistral, Qwen2, RoBERTa or
 * BERT families. Missing or malformed fields raise an error naming the file and the field.
 *
 * @example
 * ```ts
 * const architecture = parseHfConfig(JSON.parse(readFileSync('Meta-Llama-3-8B/config.json', 'utf8')));
 * architecture.numLayers; // 32
 * ```
 */
export function parseHfConfig(json: unknown, options: ParseHfConfigOptions = {}): ModelArchitecture {
  const source = options.source ?? 'config.json';
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new BadamOptionError(source, json, 'a JSON object (a Hugging Face config.json)');
  }
  const config = json as Record<string, unknown>;
  const modelType = config.model_type;
  const family = SUPPORTED_MODEL_TYPES[modelType as keyof typeof SUPPORTED_MODEL_TYPES];
  if (family === undefined) {
    throw new BadamOptionError(
      `${source} model_type`,
      modelType,
      `one of ${Object.keys(SUPPORTED_MODEL_TYPES).join(', ')}`,
      'other architectures need an explicit parameter list',
    );
  }
  const int = (field: string, fallback?: number): number => {
    const value = config[field] ?? fallback;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
      throw new BadamOptionError(`${source} ${field}`, value, 'a positive integer');
    }
    const limit = HF_CONFIG_LIMITS[field];
    if (limit !== undefined && value > limit) {
      throw new BadamOptionError(
        `${source} ${field}`,
        value,
        `at most ${limit.toLocaleString('en')}`,
        'far beyond any published model: the file is mistyped or not a real config.json',
      );
    }
    return value;
  };
  const bool = (field: string, fallback: boolean): boolean => {
    const value = config[field] ?? fallback;
    if (typeof value !== 'boolean') throw new BadamOptionError(`${source} ${field}`, value, 'true or false');
    return value;
  };
  const rawDType = config.torch_dtype ?? config.dtype;
  const dtype: DType | undefined =
    typeof rawDType === 'string' ? parseDType(rawDType, `${source} torch_dtype`) : undefined;

  if (family === 'llama' || family === 'mistral' || family === 'qwen2') {
    const hiddenSize = int('hidden_size');
    const numHeads = int('num_attention_heads');
    if (config.head_dim === undefined && hiddenSize % numHeads !== 0) {
      throw new BadamOptionError(
        `${source} hidden_size`,
        hiddenSize,
        `a multiple of num_attention_heads (${numHeads}) when head_dim is absent`,
      );
    }
    const numKeyValueHeads = int('num_key_value_heads', numHeads);
    if (numHeads % numKeyValueHeads !== 0) {
      throw new BadamOptionError(
        `${source} num_key_value_heads`,
        numKeyValueHeads,
        `a divisor of num_attention_heads (${numHeads})`,
      );
    }
    const attentionBias = bool('attention_bias', false);
    const decoder: DecoderArchitecture = {
      kind: 'decoder',
      family,
      vocabSize: int('vocab_size'),
      hiddenSize,
      intermediateSize: int('intermediate_size'),
      numLayers: int('num_hidden_layers'),
      numHeads,
      numKeyValueHeads,
      headDim: int('head_dim', hiddenSize / numHeads),
      maxPositionEmbeddings: int('max_position_embeddings', 2048),
      tieWordEmbeddings: bool('tie_word_embeddings', false),
      qkvBias: family === 'qwen2' || attentionBias,
      outputBias: family === 'llama' && attentionBias,
      mlpBias: family === 'llama' && bool('mlp_bias', false),
      ...(dtype ? { dtype } : {}),
    };
    return decoder;
  }

  const head = options.head ?? headFromArchitectures(config.architectures);
  const id2label = config.id2label;
  const labelCount =
    typeof id2label === 'object' && id2label !== null ? Object.keys(id2label).length : undefined;
  const encoder: EncoderArchitecture = {
    kind: 'encoder',
    family,
    vocabSize: int('vocab_size'),
    hiddenSize: int('hidden_size'),
    intermediateSize: int('intermediate_size'),
    numLayers: int('num_hidden_layers'),
    numHeads: int('num_attention_heads'),
    maxPositionEmbeddings: int('max_position_embeddings', 512),
    typeVocabSize: int('type_vocab_size', 2),
    head,
    numLabels: int('num_labels', labelCount ?? 2),
    ...(dtype ? { dtype } : {}),
  };
  return encoder;
}

function headFromArchitectures(architectures: unknown): EncoderHead {
  const first = Array.isArray(architectures) ? architectures[0] : undefined;
  if (typeof first !== 'string') return 'model';
  if (first.endsWith('ForMaskedLM')) return 'masked-lm';
  if (first.endsWith('ForSequenceClassification')) return 'sequence-classification';
  if (first.endsWith('ForMultipleChoice')) return 'multiple-choice';
  return 'model';
}
