import { BadamOptionError, SeededRandom } from '@badam/core';
import type { InstructionExample } from './alpaca-dataset.js';
import { type ChatTemplate, encodeTurns, templateEosId } from './chat-template.js';
import { pushAll } from './push-all.js';
import type { Tokenizer } from './tokenizer.js';

/** The label of a token the loss ignores (prompt tokens, padding). */
export const IGNORE_LABEL = -100;

/** A tokenized training example. */
export interface TokenizedExample {
  readonly inputIds: readonly number[];
  /** The token id where the model learns it, -100 where it does not (the prompt). */
  readonly labels: readonly number[];
}

/**
 * LLaMA-Factory's `infer_seqlen`: how a budget of `cutoff` tokens is split between a source (prompt) and a
 * target (response): a short target keeps all of it; else a short source keeps all of it; else both are cut
 * in proportion.
 */
export function inferSeqlen(sourceLength: number, targetLength: number, cutoff: number): [number, number] {
  let maxTarget: number;
  if (targetLength * 2 < cutoff) maxTarget = cutoff;
  else if (sourceLength * 2 < cutoff) maxTarget = cutoff - sourceLength;
  else maxTarget = Math.floor(cutoff * (targetLength / (sourceLength + targetLength)));
  const newTarget = Math.min(maxTarget, targetLength);
  const newSource = Math.min(Math.max(cutoff - newTarget, 0), sourceLength);
  return [newSource, newTarget];
}

/** Options of {@link encodeSupervised}. */
export interface SupervisedOptions {
  /** Most tokens per example (LLaMA-Factory's cutoff_len). Default 1024. */
  cutoffLen?: number;
  /** Train on the prompt too. Default false. */
  trainOnPrompt?: boolean;
  /**
   * The model's vocab_size: a token id at or above it is an error naming the example, here, instead of an
   * index error in the middle of training.
   */
  vocabSize?: number;
}

/**
 * Refuses a token id the model has no embedding for (`>= vocabSize`), naming the example (its index and the
 * start of its `text`): the tokenizer does not belong to the model (or added tokens the model was not
 * resized for).
 */
export function checkTokenIds(
  ids: readonly number[],
  vocabSize: number | undefined,
  index: number,
  text: string,
): void {
  if (vocabSize === undefined) return;
  for (const id of ids) {
    if (id >= vocabSize || id < 0) {
      throw new BadamOptionError(
        `token ids of example ${index} (${JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}...` : text)})`,
        id,
        `in [0, ${vocabSize}), the model's vocab_size`,
        'the tokenizer gives ids the model has no embedding for: use the tokenizer saved with the model',
      );
    }
  }
}

/**
 * Tokenizes instruction examples for supervised fine-tuning as LLaMA-Factory does: each turn's prompt and
 * response through the template, truncated with {@link inferSeqlen} to fit `cutoffLen`, prompt tokens
 * labelled -100. Examples left without a trained token are dropped (and counted).
 */
export function encodeSupervised(
  examples: readonly InstructionExample[],
  tokenizer: Tokenizer,
  template: ChatTemplate,
  options: SupervisedOptions = {},
): { examples: TokenizedExample[]; dropped: number } {
  const cutoff = options.cutoffLen ?? 1024;
  if (!Number.isSafeInteger(cutoff) || cutoff < 2)
    throw new BadamOptionError('cutoff_len', cutoff, 'an integer >= 2');
  const out: TokenizedExample[] = [];
  let dropped = 0;
  for (const [index, example] of examples.entries()) {
    const inputIds: number[] = [];
    const labels: number[] = [];
    let total = 0;
    for (const { prompt, response } of encodeTurns(template, tokenizer, example.turns, example.system)) {
      if (total >= cutoff) break;
      const [sourceLength, targetLength] = inferSeqlen(prompt.length, response.length, cutoff - total);
      const source = prompt.slice(0, sourceLength);
      const target = response.slice(0, targetLength);
      total += sourceLength + targetLength;
      pushAll(inputIds, source, target);
      pushAll(labels, options.trainOnPrompt ? source : source.map(() => IGNORE_LABEL), target);
    }
    checkTokenIds(inputIds, options.vocabSize, index, example.turns[0]?.user ?? '');
    if (labels.every((l) => l === IGNORE_LABEL) || inputIds.length < 2) {
      dropped += 1;
      continue;
    }
    out.push({ inputIds, labels });
  }
  return { examples: out, dropped };
}

/**
 * Pretraining examples (`--stage pt`): each example's text (prompt and response) followed by EOS,
 * concatenated and cut into blocks of `cutoffLen` tokens, all trained on (LLaMA-Factory's
 * preprocess_pretrain_dataset).
 */
export function encodePretraining(
  examples: readonly InstructionExample[],
  tokenizer: Tokenizer,
  template: ChatTemplate,
  cutoffLen = 1024,
  vocabSize?: number,
): TokenizedExample[] {
  const eos = templateEosId(template, tokenizer);
  const stream: number[] = [];
  for (const [index, e] of examples.entries()) {
    for (const turn of e.turns) {
      const text = [turn.user, turn.assistant].filter(Boolean).join('\n');
      const ids = tokenizer.encode(text, { addSpecialTokens: false });
      checkTokenIds(ids, vocabSize, index, turn.user);
      pushAll(stream, ids, [eos]);
    }
  }
  const blocks: TokenizedExample[] = [];
  for (let i = 0; i + cutoffLen <= stream.length; i += cutoffLen) {
    const ids = stream.slice(i, i + cutoffLen);
    blocks.push({ inputIds: ids, labels: ids });
  }
  if (blocks.length === 0 && stream.length >= 2) blocks.push({ inputIds: stream, labels: stream });
  return blocks;
}

/**
 * Splits off a validation set as Hugging Face's `train_test_split(test_size=valSize, seed)`: a seeded
 * permutation, the first `ceil(valSize * n)` (or `valSize` when it is a count >= 1) to validation.
 */
export function splitValidation<T>(
  items: readonly T[],
  valSize: number,
  seed = 42,
): { train: T[]; validation: T[] } {
  if (!(valSize >= 0) || (valSize >= 1 && !Number.isSafeInteger(valSize))) {
    throw new BadamOptionError('val_size', valSize, 'a fraction in [0, 1) or a whole number of examples');
  }
  if (valSize === 0) return { train: [...items], validation: [] };
  const count = valSize < 1 ? Math.ceil(valSize * items.length) : valSize;
  if (count >= items.length) {
    throw new BadamOptionError(
      'val_size',
      valSize,
      `fewer than the ${items.length} examples, leaving some to train on`,
    );
  }
  const order = SeededRandom.fromSeed(seed).permutation(items.length);
  return {
    validation: order.slice(0, count).map((i) => items[i]!),
    train: order.slice(count).map((i) => items[i]!),
  };
}
