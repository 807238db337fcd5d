/** Mean, sample standard deviation, min and max of one number measured once per seed. */
export interface SeedSummary {
  readonly mean: number;
  /** Sample standard deviation (n - 1 in the denominator); 0 for one seed. */
  readonly sd: number;
  readonly min: number;
  readonly max: number;
  readonly n: number;
}

/**
 * Summarises one quantity over seeds.
 *
 * @example
 * ```ts
 * summarizeSeeds([1, 2, 3]); // { mean: 2, sd: 1, min: 1, max: 3, n: 3 }
 * ```
 */
export function summarizeSeeds(values: readonly number[]): SeedSummary {
  if (values.length === 0)
    throw new Error('summarizeSeeds: no values (a comparison needs at least one seed)');
  const n = values.length;
  const mean = values.reduce((a, b) => a + b, 0) / n;
  const sd = n > 1 ? Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1)) : 0;
  return { mean, sd, min: Math.min(...values), max: Math.max(...values), n };
}

/** `mean ± sd` with `digits` decimals, after scaling (100 and `%` for a percentage: `58.8% ± 3.1%`). */
export function formatMeanSd(summary: SeedSummary, digits: number, scale = 1, unit = ''): string {
  return `${(summary.mean * scale).toFixed(digits)}${unit} ± ${(summary.sd * scale).toFixed(digits)}${unit}`;
}
