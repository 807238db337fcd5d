import { roundToBfloat16, roundToFloat16 } from '@badam/core';
import { afterAll, describe, expect, it } from 'vitest';
import { Device } from '../src/index.js';
import { randomArray } from './helpers.js';

// The CPU device's GEMMs run @badam/native's blocked SGEMM; BADAM_CPU_GEMM=reference gives the plain loop of
// ref::gemm it replaced. Both are checked here against float64 JavaScript, within the error bound of any fp32
// summation order, and against each other: they sum in different orders, so they agree to fp32 rounding.

/** Creates what `make` makes with BADAM_CPU_GEMM set to `value` (unset for undefined), then restores it. */
function withCpuGemm<T>(value: string | undefined, make: () => T): T {
  const saved = process.env.BADAM_CPU_GEMM;
  const set = (v: string | undefined) => {
    if (v === undefined) delete process.env.BADAM_CPU_GEMM;
    else process.env.BADAM_CPU_GEMM = v;
  };
  set(value);
  try {
    return make();
  } finally {
    set(saved);
  }
}

const device = withCpuGemm(undefined, () => Device.cpu());
const reference = withCpuGemm('reference', () => Device.cpu());
afterAll(() => {
  device.emptyCache();
  reference.emptyCache();
});

/** op(A) op(B) in float64, and sum |a| |b| per entry: the scale of any fp32 summation's error. */
function exactGemm(
  a: Float32Array,
  b: Float32Array,
  [m, n, k]: readonly number[],
  ta: boolean,
  tb: boolean,
): { value: Float64Array; magnitude: Float64Array } {
  const value = new Float64Array(m! * n!);
  const magnitude = new Float64Array(m! * n!);
  for (let i = 0; i < m!; i++)
    for (let j = 0; j < n!; j++) {
      let s = 0;
      let abs = 0;
      for (let p = 0; p < k!; p++) {
        const x = a[ta ? p * m! + i : i * k! + p]! * b[tb ? j * k! + p : p * n! + j]!;
        s += x;
        abs += Math.abs(x);
      }
      value[i * n! + j] = s;
      magnitude[i * n! + j] = abs;
    }
  return { value, magnitude };
}

/** Largest |got - want| / bound over the entries (<= 1: within the bound). */
function worstRatio(got: ArrayLike<number>, want: ArrayLike<number>, bound: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i]! - want[i]!);
    const ratio = err === 0 ? 0 : err / bound[i]!;
    if (!(ratio <= worst)) worst = Number.isNaN(ratio) ? Number.POSITIVE_INFINITY : ratio;
  }
  return worst;
}

// Odd sizes (partial micro-tiles everywhere), a product large enough for the thread pool, and k past one
// packed panel (256), which sums panels into C.
const shapes = [
  [1, 1, 1],
  [7, 1, 33],
  [1, 130, 7],
  [33, 7, 130],
  [130, 33, 7],
  [7, 33, 1],
  [130, 130, 33],
  [130, 7, 300],
] as const;
const scalars = [
  [1, 0], // straight into an fp32 C
  [-1.5, 0],
  [0.5, 2],
  [1, 1], // gradient accumulation
] as const;
const rounding = { bfloat16: roundToBfloat16, float16: roundToFloat16, float32: Math.fround } as const;

describe('CPU device gemm: @badam/native SGEMM against float64 loops and the reference loop', () => {
  it('says which GEMM it runs', () => {
    expect(device.description.gemmLibrary).toMatch(/^native sgemm (avx512|avx2|scalar) x[1-9]\d*$/);
    expect(reference.description.gemmLibrary).toBe('reference');
    expect(() => withCpuGemm('fast', () => Device.cpu())).toThrow(
      'BADAM_CPU_GEMM must be "native" or "reference", got "fast"',
    );
  });

  for (const dtype of ['bfloat16', 'float16', 'float32'] as const) {
    for (const [ta, tb] of [
      [false, false],
      [true, false],
      [false, true],
      [true, true],
    ] as const) {
      it(`${dtype} operands, transA ${ta}, transB ${tb}: odd sizes, alpha and beta, fp32 and ${dtype} C`, () => {
        const round = rounding[dtype];
        for (const [si, shape] of shapes.entries()) {
          const [m, n, k] = shape;
          const aHost = randomArray(m * k, 11 + si).map(round);
          const bHost = randomArray(k * n, 23 + si).map(round);
          const a = device.tensor(aHost, [m * k], dtype);
          const b = device.tensor(bHost, [k * n], dtype);
          const aRef = reference.tensor(aHost, [m * k], dtype);
          const bRef = reference.tensor(bHost, [k * n], dtype);
          const { value, magnitude } = exactGemm(aHost, bHost, shape, ta, tb);
          for (const [alpha, beta] of scalars) {
            const what = `m ${m} n ${n} k ${k}, alpha ${alpha} beta ${beta}`;
            // beta 0 must not read C: NaN there would show.
            const cStart =
              beta === 0 ? new Float32Array(m * n).fill(Number.NaN) : randomArray(m * n, 37 + si).map(round);
            const betaC = (i: number) => (beta === 0 ? 0 : beta * cStart[i]!);
            const expected = value.map((x, i) => alpha * x + betaC(i));
            // Any fp32 summation of k products is within k u sum|a b| (u = 2^-24); alpha, beta: 3 u more.
            const bound = magnitude.map(
              (x, i) => (k + 4) * 2 ** -24 * (Math.abs(alpha) * x + Math.abs(betaC(i))),
            );
            const shapeArgs = { m, n, k, transA: ta, transB: tb, alpha, beta };

            const c = device.tensor(cStart, [m, n], 'float32');
            device.gemm(a, b, c, shapeArgs);
            const got = c.read();
            expect(worstRatio(got, expected, bound), what).toBeLessThanOrEqual(1);
            const cRef = reference.tensor(cStart, [m, n], 'float32');
            reference.gemm(aRef, bRef, cRef, shapeArgs);
            expect(worstRatio(cRef.read(), expected, bound), `reference, ${what}`).toBeLessThanOrEqual(1);
            expect(
              worstRatio(got, cRef.read(), bound),
              `native against reference, ${what}`,
            ).toBeLessThanOrEqual(2);

            // C in the operands' 16-bit dtype: the same fp32 result, rounded once.
            if (dtype !== 'float32') {
              const c16 = device.tensor(cStart, [m, n], dtype);
              device.gemm(a, b, c16, shapeArgs);
              expect(Array.from(c16.read()), `${dtype} C, ${what}`).toEqual(Array.from(got, round));
              c16.free();
            }
            c.free();
            cRef.free();
          }
          for (const t of [a, b, aRef, bRef]) t.free();
        }
      });
    }
  }
});
