/**
 * How one tensor of `numel` elements is split over `worldSize` ranks: rank r holds the flat range
 * [offsets[r], offsets[r] + counts[r]), balanced (counts differ by at most one), in rank order, so that the
 * concatenation of every rank's shard is the tensor. A tensor smaller than the world is not split: every
 * rank holds all of it (`sharded` false).
 */
export interface ShardLayout {
  readonly numel: number;
  readonly sharded: boolean;
  /** Elements per rank (all `numel` when not sharded). */
  readonly counts: readonly number[];
  readonly offsets: readonly number[];
}

/** The layout of `numel` elements over `worldSize` ranks. */
export function shardLayout(numel: number, worldSize: number): ShardLayout {
  if (worldSize === 1 || numel < worldSize) {
    return {
      numel,
      sharded: false,
      counts: Array.from({ length: worldSize }, () => numel),
      offsets: Array.from({ length: worldSize }, () => 0),
    };
  }
  const offsets = Array.from({ length: worldSize }, (_, r) => Math.floor((r * numel) / worldSize));
  const counts = offsets.map((o, r) => (r + 1 < worldSize ? offsets[r + 1]! : numel) - o);
  return { numel, sharded: true, counts, offsets };
}

/** Rank `rank`'s part of `values` under `layout` (a view, not a copy). */
export function shardOf<T extends Float32Array | Uint16Array>(
  values: T,
  layout: ShardLayout,
  rank: number,
): T {
  const start = layout.offsets[rank]!;
  return values.subarray(start, start + layout.counts[rank]!) as T;
}
