import { SeededRandom } from '../random.js';
import { requireInteger } from '../validation.js';

/**
 * Training or evaluation data as the trainer reads it: the micro-batches of each epoch, in order. The
 * order must depend only on the epoch number (shuffle with a seed derived from it), so that a resumed run
 * can skip exactly the micro-batches it already used.
 */
export interface DataSource<TBatch> {
  /** The micro-batches of `epoch` (0-based). */
  batches(epoch: number): Iterable<TBatch> | AsyncIterable<TBatch>;
  /** Micro-batches per epoch, when known (needed to run by epochs and to report epoch fractions). */
  readonly length?: number;
}

/**
 * A {@link DataSource} over an in-memory array, shuffled per epoch with a seeded generator when `shuffle`
 * is given, grouped into micro-batches of `batchSize` by `collate`.
 */
export function arrayDataSource<TItem, TBatch>(
  items: readonly TItem[],
  options: {
    batchSize: number;
    collate: (items: TItem[]) => TBatch;
    /** Seed of the per-epoch shuffle; omit to keep the array order. */
    shuffleSeed?: number;
    /** Drop a last batch smaller than batchSize. Default false. */
    dropLast?: boolean;
  },
): DataSource<TBatch> {
  const { batchSize, collate, shuffleSeed, dropLast = false } = options;
  requireInteger('batchSize', batchSize, { min: 1 });
  if (shuffleSeed !== undefined) requireInteger('shuffleSeed', shuffleSeed, { min: 0 });
  const full = Math.floor(items.length / batchSize);
  const length = dropLast || items.length % batchSize === 0 ? full : full + 1;
  return {
    length,
    *batches(epoch: number) {
      const order = items.map((_, i) => i);
      if (shuffleSeed !== undefined) shuffleInPlace(order, shuffleSeed, epoch);
      for (let b = 0; b < length; b++) {
        yield collate(order.slice(b * batchSize, (b + 1) * batchSize).map((i) => items[i]!));
      }
    },
  };
}

function shuffleInPlace(order: number[], seed: number, epoch: number): void {
  // A generator seeded by (seed, epoch): the same order for the same epoch, in any process.
  const mixed = (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(epoch + 1, 0x85ebca6b)) >>> 0;
  SeededRandom.fromSeed(mixed).shuffle(order);
}
