import { BadamOptionError } from '@badam/core';
import { pushAll } from './push-all.js';
import type { Tokenizer } from './tokenizer.js';

/** How a too-long pair is cut, as Hugging Face's `truncation` strategies. */
export type TruncationStrategy = 'longest_first' | 'only_first' | 'only_second';

/** One encoded (pair of) sequence(s) for an encoder. */
export interface EncodedPair {
  readonly inputIds: number[];
  /** 0 for the first segment, 1 for the second (BERT); all 0 for RoBERTa. */
  readonly tokenTypeIds: number[];
}

/** The classifier and separator ids of an encoder's tokenizer, and how it joins pairs. */
export interface PairFormat {
  /** `roberta`: `<s> A </s></s> B </s>`, one segment id; `bert`: `[CLS] A [SEP] B [SEP]`, segments 0 and 1. */
  readonly style: 'roberta' | 'bert';
  readonly clsId: number;
  readonly sepId: number;
}

/** The pair format of `tokenizer` for a model family: RoBERTa's `<s>` / `</s>` or BERT's `[CLS]` / `[SEP]`. */
export function pairFormat(tokenizer: Tokenizer, style: 'roberta' | 'bert'): PairFormat {
  const cls =
    style === 'roberta' ? (tokenizer.bosTokenId ?? tokenizer.tokenToId('<s>')) : tokenizer.tokenToId('[CLS]');
  const sep =
    style === 'roberta'
      ? (tokenizer.eosTokenId ?? tokenizer.tokenToId('</s>'))
      : tokenizer.tokenToId('[SEP]');
  if (cls === undefined || sep === undefined) {
    throw new BadamOptionError(
      'tokenizer',
      'without classifier / separator tokens',
      style === 'roberta' ? '<s> and </s> in the vocabulary' : '[CLS] and [SEP] in the vocabulary',
    );
  }
  return { style, clsId: cls, sepId: sep };
}

/**
 * Encodes `first` (and `second`) as the model expects: `<s> A </s></s> B </s>` for RoBERTa, `[CLS] A [SEP] B
 * [SEP]` with segment ids for BERT, truncated to `maxLength` tokens with Hugging Face's strategies
 * (`longest_first` removes a token at a time from the longer side).
 */
export function encodeSentencePair(
  tokenizer: Tokenizer,
  format: PairFormat,
  first: string,
  second: string | undefined,
  options: { maxLength: number; truncation?: TruncationStrategy },
): EncodedPair {
  const { maxLength, truncation = 'longest_first' } = options;
  const a = tokenizer.encode(first);
  const b = second === undefined ? undefined : tokenizer.encode(second);
  const specials = b === undefined ? 2 : format.style === 'roberta' ? 4 : 3;
  const budget = maxLength - specials;
  if (!Number.isSafeInteger(maxLength) || budget < (b === undefined ? 1 : 2)) {
    throw new BadamOptionError(
      'max length',
      maxLength,
      `an integer >= ${specials + (b === undefined ? 1 : 2)}`,
    );
  }
  let keepA = a.length;
  let keepB = b?.length ?? 0;
  if (keepA + keepB > budget) {
    if (b === undefined || truncation === 'only_first') keepA = Math.max(0, budget - keepB);
    else if (truncation === 'only_second') keepB = Math.max(0, budget - keepA);
    else {
      while (keepA + keepB > budget) {
        if (keepA > keepB) keepA -= 1;
        else keepB -= 1;
      }
    }
    if (keepA + keepB > budget) {
      throw new BadamOptionError(
        'truncation',
        truncation,
        `a strategy that can fit ${a.length} + ${b?.length ?? 0} tokens into ${maxLength}`,
      );
    }
  }
  const inputIds = [format.clsId, ...a.slice(0, keepA), format.sepId];
  const tokenTypeIds = inputIds.map(() => 0);
  if (b !== undefined) {
    const tail = [...(format.style === 'roberta' ? [format.sepId] : []), ...b.slice(0, keepB), format.sepId];
    pushAll(inputIds, tail);
    pushAll(
      tokenTypeIds,
      tail.map(() => (format.style === 'bert' ? 1 : 0)),
    );
  }
  return { inputIds, tokenTypeIds };
}
