import type { Tokenizer } from './tokenizer.js';

/** The special tokens of {@link ByteTokenizer}, after the 256 byte ids. */
export const BYTE_SPECIAL_TOKENS = ['<pad>', '<s>', '</s>'] as const;

/**
 * The built-in tokenizer of the embedded default: one token per UTF-8 byte (ids 0-255) plus `<pad>` (256),
 * `<s>` (257) and `</s>` (258). Needs no file, covers every text, and keeps a tiny model's vocabulary
 * small. Special tokens written in the text are recognised, as Hugging Face tokenizers do.
 *
 * @example
 * ```ts
 * const tokenizer = new ByteTokenizer();
 * tokenizer.encode('hi</s>'); // [104, 105, 258]
 * ```
 */
export class ByteTokenizer implements Tokenizer {
  readonly vocabSize = 256 + BYTE_SPECIAL_TOKENS.length;
  readonly padTokenId = 256;
  readonly bosTokenId = 257;
  readonly eosTokenId = 258;
  private readonly encoder = new TextEncoder();
  private readonly decoder = new TextDecoder('utf-8', { fatal: false });

  encode(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    const ids: number[] = options.addSpecialTokens ? [this.bosTokenId] : [];
    let rest = text;
    while (rest.length > 0) {
      let at = -1;
      let special = -1;
      for (let s = 0; s < BYTE_SPECIAL_TOKENS.length; s++) {
        const i = rest.indexOf(BYTE_SPECIAL_TOKENS[s]!);
        if (i >= 0 && (at < 0 || i < at)) {
          at = i;
          special = s;
        }
      }
      const plain = at < 0 ? rest : rest.slice(0, at);
      for (const byte of this.encoder.encode(plain)) ids.push(byte);
      if (at < 0) break;
      ids.push(256 + special);
      rest = rest.slice(at + BYTE_SPECIAL_TOKENS[special]!.length);
    }
    return ids;
  }

  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    let out = '';
    let bytes: number[] = [];
    const flush = () => {
      out += this.decoder.decode(Uint8Array.from(bytes));
      bytes = [];
    };
    for (const id of ids) {
      if (id >= 0 && id < 256) {
        bytes.push(id);
        continue;
      }
      flush();
      const special = BYTE_SPECIAL_TOKENS[id - 256];
      if (special === undefined)
        throw new RangeError(
          `token id ${id} is outside the byte tokenizer's vocabulary (0..${this.vocabSize - 1})`,
        );
      if (!options.skipSpecialTokens) out += special;
    }
    flush();
    return out;
  }

  /**
   * The same tokenizer as a Hugging Face `tokenizer.json` (byte-level BPE without merges, GPT-2's byte to
   * character map, the three special tokens as added tokens) and its `tokenizer_config.json`, so a model
   * trained with it can be used by any Hugging Face loader.
   */
  toHuggingFace(): { tokenizer: Record<string, unknown>; config: Record<string, unknown> } {
    const vocab: Record<string, number> = {};
    byteToUnicode().forEach((char, byte) => {
      vocab[char] = byte;
    });
    const added = BYTE_SPECIAL_TOKENS.map((content, i) => ({
      id: 256 + i,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    }));
    return {
      tokenizer: {
        version: '1.0',
        truncation: null,
        padding: null,
        added_tokens: added,
        normalizer: null,
        pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
        post_processor: null,
        decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
        model: {
          type: 'BPE',
          dropout: null,
          unk_token: null,
          continuing_subword_prefix: null,
          end_of_word_suffix: null,
          fuse_unk: false,
          byte_fallback: false,
          ignore_merges: false,
          vocab,
          merges: [],
        },
      },
      config: {
        bos_token: '<s>',
        eos_token: '</s>',
        pad_token: '<pad>',
        clean_up_tokenization_spaces: false,
        model_max_length: 1024,
        tokenizer_class: 'PreTrainedTokenizerFast',
      },
    };
  }

  tokenToId(token: string): number | undefined {
    const special = (BYTE_SPECIAL_TOKENS as readonly string[]).indexOf(token);
    if (special >= 0) return 256 + special;
    const bytes = this.encoder.encode(token);
    return bytes.length === 1 ? bytes[0] : undefined;
  }
}

/** GPT-2's reversible map from bytes to printable characters (`bytes_to_unicode`). */
function byteToUnicode(): string[] {
  const printable: number[] = [];
  for (let b = 33; b <= 126; b++) printable.push(b);
  for (let b = 161; b <= 172; b++) printable.push(b);
  for (let b = 174; b <= 255; b++) printable.push(b);
  const map = new Array<string>(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    map[b] = String.fromCodePoint(printable.includes(b) ? b : 256 + extra++);
  }
  return map;
}
