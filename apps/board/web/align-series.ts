/** One curve: y values at x values (x ascending). */
export interface Curve {
  readonly x: ReadonlyArray<number | null>;
  readonly y: ReadonlyArray<number | null>;
}

/**
 * uPlot's data for curves measured at different x values (runs log at different steps): one shared,
 * sorted x column and, per curve, its values there or null. Points without an x are left out.
 */
export function alignCurves(curves: readonly Curve[]): [number[], ...Array<Array<number | null>>] {
  const xs = [...new Set(curves.flatMap((c) => c.x.filter((x): x is number => x !== null)))].sort(
    (a, b) => a - b,
  );
  const index = new Map(xs.map((x, i) => [x, i]));
  const columns = curves.map((curve) => {
    const column = new Array<number | null>(xs.length).fill(null);
    curve.x.forEach((x, i) => {
      if (x !== null) column[index.get(x)!] = curve.y[i] ?? null;
    });
    return column;
  });
  return [xs, ...columns];
}

/**
 * Whole seconds made distinct: `elapsed_time` is rounded to the second, so several logged steps can share
 * one; the k-th of n sharing second t is placed at t - 0.5 + (k + 0.5) / n, within the second it was
 * rounded from, keeping every point and their order on a wall-time axis.
 */
export function spreadTies(seconds: ReadonlyArray<number | null>): Array<number | null> {
  const out = [...seconds];
  let i = 0;
  while (i < out.length) {
    const t = out[i] ?? null;
    let j = i + 1;
    while (j < out.length && t !== null && out[j] === t) j++;
    if (t !== null && j - i > 1) for (let k = i; k < j; k++) out[k] = t - 0.5 + (k - i + 0.5) / (j - i);
    i = j;
  }
  return out;
}

/** Mean, lowest and highest of several curves at each x that every one of them has (a seed group's band). */
export function meanBand(curves: readonly Curve[]): {
  x: number[];
  mean: number[];
  low: number[];
  high: number[];
} {
  const out = { x: [] as number[], mean: [] as number[], low: [] as number[], high: [] as number[] };
  if (curves.length === 0) return out;
  const maps = curves.map((c) => {
    const m = new Map<number, number>();
    c.x.forEach((x, i) => {
      const y = c.y[i];
      if (x !== null && y !== null && y !== undefined && Number.isFinite(y)) m.set(x, y);
    });
    return m;
  });
  const xs = [...maps[0]!.keys()].filter((x) => maps.every((m) => m.has(x))).sort((a, b) => a - b);
  for (const x of xs) {
    const ys = maps.map((m) => m.get(x)!);
    out.x.push(x);
    out.mean.push(ys.reduce((a, b) => a + b, 0) / ys.length);
    out.low.push(Math.min(...ys));
    out.high.push(Math.max(...ys));
  }
  return out;
}
