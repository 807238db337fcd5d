import { BadamOptionError, type DataSource, SeededRandom } from '@badam/core';
import { IGNORE_LABEL, type TokenizedExample } from './supervised.js';

/** A padded batch as plain arrays, [batch][seq] (a backend turns it into tensors). */
export interface PaddedBatch {
  readonly inputIds: number[][];
  readonly labels: number[][];
  readonly attentionMask: number[][];
  /** Tokens that carry a label (what the loss averages over). */
  readonly labelTokens: number;
}

/** Right-pads examples to the longest (rounded up to `padToMultipleOf`): padding id, label -100, mask 0. */
export function padBatch(
  examples: readonly TokenizedExample[],
  padTokenId: number,
  padToMultipleOf = 1,
): PaddedBatch {
  if (examples.length === 0) throw new BadamOptionError('batch', 0, 'at least one example');
  const longest = examples.reduce((m, e) => Math.max(m, e.inputIds.length), 0);
  const length = Math.ceil(longest / padToMultipleOf) * padToMultipleOf;
  const pad = (row: readonly number[], value: number) => [
    ...row,
    ...new Array<number>(length - row.length).fill(value),
  ];
  return {
    inputIds: examples.map((e) => pad(e.inputIds, padTokenId)),
    labels: examples.map((e) => pad(e.labels, IGNORE_LABEL)),
    attentionMask: examples.map((e) =>
      pad(
        e.inputIds.map(() => 1),
        0,
      ),
    ),
    labelTokens: examples.reduce(
      (n, e) => n + e.labels.filter((l, i) => i > 0 && l !== IGNORE_LABEL).length,
      0,
    ),
  };
}

/** Options of {@link batchedDataSource}. */
export interface BatchingOptions {
  batchSize: number;
  padTokenId: number;
  /** Shuffle each epoch with this seed. Default: no shuffle. */
  shuffleSeed?: number;
  /** Hugging Face's group_by_length: batches of similar lengths, longest batch first. Default false. */
  groupByLength?: boolean;
  /** Round the padded length up to a multiple (LLaMA-Factory pads to 8). Default 1. */
  padToMultipleOf?: number;
}

/**
 * The trainer's `DataSource` (@badam/core) over tokenized examples: per epoch a seeded shuffle (or Hugging Face's
 * length grouping: a shuffle cut into mega-batches of 50 batches at most, each sorted longest first, the
 * longest batch moved to the front), then padded batches.
 */
export function batchedDataSource(
  examples: readonly TokenizedExample[],
  options: BatchingOptions,
): DataSource<PaddedBatch> {
  const { batchSize, padTokenId, shuffleSeed, groupByLength = false, padToMultipleOf = 1 } = options;
  if (!Number.isSafeInteger(batchSize) || batchSize < 1)
    throw new BadamOptionError('batch size', batchSize, 'an integer >= 1');
  if (examples.length === 0) throw new BadamOptionError('examples', 0, 'at least one training example');
  const length = Math.ceil(examples.length / batchSize);
  const orderOf = (epoch: number): number[] => {
    const seed = shuffleSeed ?? 0;
    const rng = SeededRandom.fromSeed(((seed >>> 0) * 2654435761 + epoch) % 2 ** 32);
    const order =
      shuffleSeed === undefined && !groupByLength
        ? examples.map((_, i) => i)
        : rng.permutation(examples.length);
    if (!groupByLength) return order;
    const megaBatchMult = Math.max(1, Math.min(Math.floor(examples.length / (batchSize * 4)), 50));
    const mega = megaBatchMult * batchSize;
    const lengthOf = (i: number) => examples[i]!.inputIds.length;
    const grouped: number[][] = [];
    for (let m = 0; m < order.length; m += mega) {
      const sorted = order.slice(m, m + mega).sort((a, b) => lengthOf(b) - lengthOf(a));
      for (let b = 0; b < sorted.length; b += batchSize) grouped.push(sorted.slice(b, b + batchSize));
    }
    // Longest batch first, so a too-long batch fails at the start of the epoch, not at its end.
    let longest = 0;
    grouped.forEach((batch, i) => {
      if (lengthOf(batch[0]!) > lengthOf(grouped[longest]![0]!)) longest = i;
    });
    [grouped[0], grouped[longest]] = [grouped[longest]!, grouped[0]!];
    return grouped.flat();
  };
  return {
    length,
    *batches(epoch: number) {
      const order = orderOf(epoch);
      for (let b = 0; b < length; b++) {
        yield padBatch(
          order.slice(b * batchSize, (b + 1) * batchSize).map((i) => examples[i]!),
          padTokenId,
          padToMultipleOf,
        );
      }
    },
  };
}
