import type { SeededRandom } from '@badam/core';

/** A standard normal sample by Box-Muller on the seeded generator: the same weights for the same seed everywhere. */
export function gaussian(rng: SeededRandom): number {
  const u = 1 - rng.nextFloat();
  const v = rng.nextFloat();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}
