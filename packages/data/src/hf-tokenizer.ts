import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BadamOptionError } from '@badam/core';
import { Tokenizer as TokenizersJs } from '@huggingface/tokenizers';
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

  /** Loads `<dir>/tokenizer.json` and, if present, `<dir>/tokenizer_config.json`. */
  static async fromDirectory(directory: string): Promise<HfTokenizer> {
    const read = async (file: string, required: boolean): Promise<Record<string, unknown> | undefined> => {
      const path = join(directory, file);
      let text: string;
      try {
        text = await readFile(path, 'utf8');
      } catch (error) {
        if (!required && (error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw new BadamOptionError(
          'tokenizer',
          path,
          'a readable tokenizer.json (vocab.json + merges.txt alone are not supported)',
          (error as NodeJS.ErrnoException).code,
        );
      }
      try {
        return JSON.parse(text) as Record<string, unknown>;
      } catch (error) {
        throw new BadamOptionError('tokenizer', path, 'valid JSON', (error as Error).message);
      }
    };
    const tokenizerJson = (await read('tokenizer.json', true))!;
    const config = (await read('tokenizer_config.json', false)) ?? {};
    let impl: HfTokenizerImpl;
    try {
      impl = new TokenizersJs(tokenizerJson, config) as HfTokenizerImpl;
    } catch (error) {
      throw new BadamOptionError(
        'tokenizer',
        join(directory, 'tokenizer.json'),
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
