/** One curve: y values at x values (x ascending). */
export interface Curve {
  readonly x: readonly number[];
  readonly y: ReadonlyArray<number | null>;
}

/**
 * uPlot's data for curves measured at different x values (runs log at different steps): one shared,
 * sorted x column and, per curve, its values there or null.
 */
export function alignCurves(curves: readonly Curve[]): [number[], ...Array<Array<number | null>>] {
  const xs = [...new Set(curves.flatMap((c) => c.x))].sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const columns = curves.map((curve) => {
    const column = new Array<number | null>(xs.length).fill(null);
    curve.x.forEach((x, i) => {
      column[index.get(x)!] = curve.y[i] ?? null;
    });
    return column;
  });
  return [xs, ...columns];
}
