import { describe, expect, it } from 'vitest';
import { gemmKernel, gemmThreads, nativeAvailable, sgemm, sgemmReference } from '../src/index.js';

function random(n: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  return Float32Array.from({ length: n }, () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return (s / 2 ** 32) * 2 - 1;
  });
}

/** Independent JS reference: C = op(A) op(B). */
function naive(
  a: Float32Array,
  b: Float32Array,
  m: number,
  n: number,
  k: number,
  ta: boolean,
  tb: boolean,
): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++)
        s += (ta ? a[p * m + i]! : a[i * k + p]!) * (tb ? b[j * k + p]! : b[p * n + j]!);
      c[i * n + j] = s;
    }
  return c;
}

describe('native sgemm', () => {
  it('is built here, with a SIMD micro-kernel and threads', () => {
    expect(nativeAvailable()).toBe(true);
    expect(['avx512', 'avx2', 'scalar']).toContain(gemmKernel());
    expect(gemmThreads()).toBeGreaterThanOrEqual(1);
  });

  const shapes = [
    [1, 1, 1],
    [7, 5, 3],
    [8, 32, 256],
    [13, 37, 300],
    [97, 33, 257],
    [200, 130, 70],
    [96, 4096 + 17, 5],
  ];
  for (const [m, n, k] of shapes) {
    for (const ta of [false, true]) {
      for (const tb of [false, true]) {
        it(`m ${m} n ${n} k ${k}, transA ${ta}, transB ${tb}: equals the reference to fp32 rounding`, () => {
          const a = random(m! * k!, m! + k!);
          const b = random(k! * n!, n! * 3 + 1);
          const c = new Float32Array(m! * n!).fill(Number.NaN); // poisoned: every entry must be written
          sgemm(a, b, c, { m: m!, n: n!, k: k!, transA: ta, transB: tb });
          const want = naive(a, b, m!, n!, k!, ta, tb);
          let worst = 0;
          for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(c[i]! - want[i]!));
          expect(worst).toBeLessThan(1e-4 * Math.sqrt(k!));
        });
      }
    }
  }

  it('batches, with a shared operand (stride 0), on views into one buffer', () => {
    const [m, n, k, batch] = [9, 11, 13, 3];
    const heap = new Float32Array(1000);
    heap.set(random(batch * m * k, 5), 0);
    heap.set(random(k * n, 6), 400);
    const a = new Float32Array(heap.buffer, 0, batch * m * k);
    const b = new Float32Array(heap.buffer, 400 * 4, k * n);
    const c = new Float32Array(heap.buffer, 600 * 4, batch * m * n);
    sgemm(a, b, c, { m, n, k, batch, strideB: 0 });
    const ref = new Float32Array(batch * m * n);
    sgemmReference(a, b, ref, { m, n, k, batch, strideB: 0 });
    for (let i = 0; i < ref.length; i++) expect(c[i]).toBeCloseTo(ref[i]!, 4);
  });

  it('rejects arrays too short for the shape, instead of reading out of bounds', () => {
    expect(() =>
      sgemm(new Float32Array(3), new Float32Array(4), new Float32Array(4), { m: 2, n: 2, k: 2 }),
    ).toThrow(/shorter than its batch x matrix size/);
    expect(() =>
      sgemm(new Float64Array(4) as never, new Float32Array(4), new Float32Array(4), { m: 2, n: 2, k: 2 }),
    ).toThrow(/a must be a Float32Array/);
    expect(() =>
      sgemm(new Float32Array(4), new Float32Array(4), new Float32Array(4), { m: -1, n: 2, k: 2 }),
    ).toThrow(/m must be a non-negative integer/);
  });
});
