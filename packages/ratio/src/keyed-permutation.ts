import { BadamOptionError } from '@badam/core';

/** Mixes a 32-bit value with a round key (a murmur3-style finaliser). */
function roundFunction(x: number, key: number): number {
  let h = (x ^ key) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * A fixed pseudo-random permutation of 0..n-1, chosen by a seed, evaluated one index at a time in O(1)
 * memory: a four-round Feistel network on the smallest even number of bits that holds n, with cycle-walking
 * to stay inside [0, n). BlockOptimizerRatio's `scatter` mode takes its windows over this permutation, so a
 * parameter of 58M entries needs no 58M-entry index array — only the k indices of the current window.
 *
 * @example
 * ```ts
 * const perm = new KeyedPermutation(10, 7);
 * Array.from({ length: 10 }, (_, i) => perm.at(i)); // each of 0..9 exactly once, the same for seed 7
 * ```
 */
export class KeyedPermutation {
  private readonly halfBits: number;
  private readonly halfSize: number;
  private readonly keys: readonly number[];

  constructor(
    /** Size of the permuted range. */
    readonly size: number,
    seed: number,
  ) {
    if (!Number.isSafeInteger(size) || size < 1 || size > 2 ** 32) {
      throw new BadamOptionError('size', size, 'an integer in 1..2^32');
    }
    if (!Number.isSafeInteger(seed) || seed < 0)
      throw new BadamOptionError('seed', seed, 'a non-negative integer');
    const bits = Math.max(2, Math.ceil(Math.log2(size)));
    this.halfBits = Math.ceil(bits / 2);
    this.halfSize = 2 ** this.halfBits;
    const low = seed >>> 0;
    const high = Math.floor(seed / 2 ** 32) >>> 0;
    this.keys = [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344].map((c, r) =>
      roundFunction(roundFunction(low, c), (high + r * 0x9e3779b9) >>> 0),
    );
  }

  /** The image of `index` (0 <= index < size). */
  at(index: number): number {
    let x = index;
    do {
      x = this.encrypt(x);
    } while (x >= this.size);
    return x;
  }

  private encrypt(x: number): number {
    const half = this.halfSize;
    let left = Math.floor(x / half);
    let right = x % half;
    for (const key of this.keys) {
      const next = left ^ (roundFunction(right, key) & (half - 1));
      left = right;
      right = next;
    }
    return left * half + right;
  }
}
