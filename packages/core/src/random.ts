import { BadamOptionError, BadamStateError } from './errors.js';

/** The four 32-bit words of a {@link SeededRandom}; plain data, safe to JSON-serialise. */
export type SeededRandomState = readonly [number, number, number, number];

/** splitmix32: spreads a seed over the state words so that nearby seeds give unrelated streams. */
function splitmix32(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x = (x + 0x9e3779b9) >>> 0;
    let z = x;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

/**
 * A small, fast, seedable pseudo-random generator (xoshiro128**) whose whole state is four integers, so a
 * run that saves {@link SeededRandom.state} and restores it with {@link SeededRandom.fromState} draws the
 * identical sequence. Used for BAdam's random block order and BlockOptimizerRatio's scatter masks.
 *
 * @example
 * ```ts
 * const rng = SeededRandom.fromSeed(42);
 * const order = rng.permutation(8); // a permutation of 0..7, the same for seed 42 every time
 * ```
 */
export class SeededRandom {
  /**
   * The four state words in a typed array: V8 keeps its elements unboxed, where numeric properties above
   * 2^30 would be heap numbers allocated on every draw (2.6x slower: it dominated drawing initial weights).
   */
  private readonly s: Uint32Array;

  private constructor(state: SeededRandomState) {
    this.s = Uint32Array.from(state);
  }

  /** A generator seeded from a non-negative safe integer. */
  static fromSeed(seed: number): SeededRandom {
    if (!Number.isSafeInteger(seed) || seed < 0) {
      throw new BadamOptionError('seed', seed, 'a non-negative integer');
    }
    const low = splitmix32(seed >>> 0);
    const high = splitmix32(Math.floor(seed / 2 ** 32) ^ 0x6a09e667);
    const state: [number, number, number, number] = [
      (low() ^ high()) >>> 0,
      (low() ^ high()) >>> 0,
      (low() ^ high()) >>> 0,
      (low() ^ high()) >>> 0,
    ];
    if (state.every((w) => w === 0)) state[0] = 1; // the all-zero state is a fixed point
    return new SeededRandom(state);
  }

  /** A generator that continues from a state saved with {@link SeededRandom.state}. */
  static fromState(state: unknown): SeededRandom {
    if (
      !Array.isArray(state) ||
      state.length !== 4 ||
      !state.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffffffff) ||
      state.every((w) => w === 0)
    ) {
      throw new BadamStateError(
        `random generator state must be four unsigned 32-bit integers, not all zero, got ${JSON.stringify(state)}`,
      );
    }
    return new SeededRandom(state as unknown as SeededRandomState);
  }

  /** The current state; feed it to {@link SeededRandom.fromState} to continue the same sequence. */
  state(): SeededRandomState {
    const s = this.s;
    return [s[0]!, s[1]!, s[2]!, s[3]!];
  }

  /** Next uniformly distributed unsigned 32-bit integer. */
  nextUint32(): number {
    const s = this.s;
    const s1 = s[1]!;
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    const t = s1 << 9;
    s[2]! ^= s[0]!;
    s[3]! ^= s1;
    s[1]! ^= s[2]!;
    s[0]! ^= s[3]!;
    s[2]! ^= t;
    s[3] = rotl(s[3]!, 11);
    return result;
  }

  /** Next float, uniform in [0, 1), with 32 bits of randomness. */
  nextFloat(): number {
    return this.nextUint32() / 2 ** 32;
  }

  /** Next integer, uniform in [0, n), without modulo bias. `n` must be in 1..2^32. */
  nextInt(n: number): number {
    if (!Number.isSafeInteger(n) || n < 1 || n > 2 ** 32) {
      throw new BadamOptionError('n', n, 'an integer in 1..2^32');
    }
    const limit = 2 ** 32 - (2 ** 32 % n);
    for (;;) {
      const x = this.nextUint32();
      if (x < limit) return x % n;
    }
  }

  /** Shuffles `items` in place (Fisher-Yates) and returns it. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.nextInt(i + 1);
      const tmp = items[i] as T;
      items[i] = items[j] as T;
      items[j] = tmp;
    }
    return items;
  }

  /** A uniformly random permutation of 0..n-1. */
  permutation(n: number): number[] {
    return this.shuffle(Array.from({ length: n }, (_, i) => i));
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
