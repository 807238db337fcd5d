import { join } from 'node:path';
import { BadamOptionError } from '@badam/core';
import { Tokenizer as TokenizersJs } from '@huggingface/tokenizers';
import { readTextFile } from './text-file.js';
import type { Tokenizer } from './tokenizer.js';

/**
 * The part of @huggingface/tokenizers' Tokenizer used here. Declared locally: the package's own .d.ts
 * uses extension-less imports that NodeNext resolution cannot follow, which would silently make it `any`.
 */
interface HfTokenizerImpl {
  encode(text: string, options?: { add_special_tokens?: boolean }): { ids: number[] };
  decode(ids: number[], options?: { skip_special_tokens?: boolean }): string;
  token_to_id(token: string): number | undefined;
  get_vocab(withAddedTokens?: boolean): Map<string, number>;
}

type TokenSetting = string | { content?: string } | null | undefined;

function tokenText(setting: TokenSetting): string | undefined {
  if (setting === null || setting === undefined) return undefined;
  return typeof setting === 'string' ? setting : setting.content;
}

/**
 * A Hugging Face tokenizer (`tokenizer.json`, with `tokenizer_config.json` for the special tokens) run by
 * @huggingface/tokenizers, the pure-JS implementation of BPE (byte-level as in Llama 3, Qwen2, GPT-2, and
 * SentencePiece-style with byte fallback as in Llama 2 and Mistral), WordPiece and Unigram.
 *
 * @example
 * ```ts
 * const tokenizer = await HfTokenizer.fromDirectory('./Meta-Llama-3-8B-Instruct');
 * tokenizer.encode('<|start_header_id|>user<|end_header_id|>'); // special tokens become their ids
 * ```
 */
export class HfTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosTokenId: number | undefined;
  readonly eosTokenId: number | undefined;
  readonly padTokenId: number;

  constructor(
    private readonly impl: HfTokenizerImpl,
    config: Record<string, unknown> = {},
  ) {
    const vocab = impl.get_vocab(true);
    let maxId = -1;
    for (const id of vocab.values()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;
    const id = (key: string) => {
      const text = tokenText(config[key] as TokenSetting);
      return text === undefined ? undefined : impl.token_to_id(text);
    };
    this.bosTokenId = id('bos_token');
    this.eosTokenId = id('eos_token');
    const pad = id('pad_token') ?? this.eosTokenId;
    if (pad === undefined) {
      throw new BadamOptionError(
        'tokenizer_config.json',
        'no pad or eos token',
        'a pad_token or eos_token (needed for padding)',
      );
    }
    this.padTokenId = pad;
  }

  /**
   * Loads `<dir>/tokenizer.json` and, if present, `<dir>/tokenizer_config.json`. Without tokenizer.json, a
   * GPT-2 / RoBERTa byte-level BPE in `vocab.json` + `merges.txt` is read instead (special tokens from
   * `special_tokens_map.json` or tokenizer_config.json, else RoBERTa's `<s>`, `</s>`, `<pad>`, `<unk>`, `<mask>`).
   */
  static async fromDirectory(directory: string): Promise<HfTokenizer> {
    // Each is optional; a pipe, a device or a file that is not UTF-8 is refused by name.
    const read = (file: string): Promise<string | undefined> =>
      readTextFile(join(directory, file), 'tokenizer file', { optional: true });
    const parse = (file: string, text: string): Record<string, unknown> => {
      try {
        return JSON.parse(text) as Record<string, unknown>;
      } catch (error) {
        throw new BadamOptionError(
          'tokenizer',
          join(directory, file),
          'valid JSON',
          (error as Error).message,
        );
      }
    };
    const configText = await read('tokenizer_config.json');
    const config = configText === undefined ? {} : parse('tokenizer_config.json', configText);
    const tokenizerText = await read('tokenizer.json');
    let tokenizerJson: Record<string, unknown>;
    let source = join(directory, 'tokenizer.json');
    if (tokenizerText !== undefined) {
      tokenizerJson = parse('tokenizer.json', tokenizerText);
    } else {
      const vocabText = await read('vocab.json');
      const mergesText = await read('merges.txt');
      if (vocabText === undefined || mergesText === undefined) {
        throw new BadamOptionError(
          'tokenizer',
          directory,
          'a directory with tokenizer.json, or vocab.json + merges.txt',
        );
      }
      const mapText = await read('special_tokens_map.json');
      const specials = {
        ...(mapText === undefined ? {} : parse('special_tokens_map.json', mapText)),
        ...config,
      };
      const converted = byteLevelBpeJson(
        parse('vocab.json', vocabText) as Record<string, number>,
        mergesText,
        specials,
      );
      tokenizerJson = converted.json;
      Object.assign(config, converted.specials);
      source = join(directory, 'vocab.json + merges.txt');
    }
    let impl: HfTokenizerImpl;
    try {
      impl = new TokenizersJs(tokenizerJson, config) as HfTokenizerImpl;
    } catch (error) {
      throw new BadamOptionError(
        'tokenizer',
        source,
        'a tokenizer @huggingface/tokenizers supports',
        (error as Error).message,
      );
    }
    return new HfTokenizer(impl, config);
  }

  encode(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    return this.impl.encode(text, { add_special_tokens: options.addSpecialTokens ?? false }).ids;
  }

  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    if (ids.length === 0) return ''; // the library throws on an empty list
    return this.impl.decode([...ids], { skip_special_tokens: options.skipSpecialTokens ?? false });
  }

  tokenToId(token: string): number | undefined {
    return this.impl.token_to_id(token);
  }
}

const ROBERTA_SPECIALS = {
  bos_token: '<s>',
  eos_token: '</s>',
  unk_token: '<unk>',
  pad_token: '<pad>',
  mask_token: '<mask>',
};

/**
 * The tokenizer.json that Hugging Face's converter makes from a GPT-2 / RoBERTa `vocab.json` + `merges.txt`:
 * byte-level pre-tokenization (GPT-2's regex, no prefix space), BPE, byte-level decoding, and the special
 * tokens present in the vocabulary as added tokens.
 */
function byteLevelBpeJson(
  vocab: Record<string, number>,
  mergesText: string,
  settings: Record<string, unknown>,
): { json: Record<string, unknown>; specials: Record<string, string> } {
  const merges = mergesText
    .split('\n')
    .map((line) => line.trimEnd())
    .filter((line) => line.length > 0 && !line.startsWith('#version'));
  for (const [i, merge] of merges.entries()) {
    if (merge.split(' ').length !== 2) {
      throw new BadamOptionError(`merges.txt line ${i + 1}`, merge, 'two tokens separated by one space');
    }
  }
  const specials: Record<string, string> = {};
  for (const [key, fallback] of Object.entries(ROBERTA_SPECIALS)) {
    const text = tokenText(settings[key] as TokenSetting) ?? fallback;
    if (vocab[text] !== undefined) specials[key] = text;
  }
  const added = [...new Set(Object.values(specials))].map((content) => ({
    id: vocab[content]!,
    content,
    single_word: false,
    lstrip: content === specials.mask_token,
    rstrip: false,
    normalized: false,
    special: true,
  }));
  const json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges,
    },
  };
  return { json, specials };
}
