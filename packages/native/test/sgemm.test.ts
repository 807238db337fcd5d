import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import {
  gemmKernel,
  gemmThreads,
  NativeOptionError,
  nativeAvailable,
  sgemm,
  sgemmReference,
} from '../src/index.js';

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
    ).toThrow(/m must be a non-negative integer, got -1/);
    expect(() => gemmThreads(0)).toThrow(NativeOptionError);
  });
});

// Node loads an addon once per process, so worker_threads share its thread pool: two threads multiplying at
// once must take turns (they used to overwrite each other's job: a crash or a hang).
describe('native sgemm from several threads at once', () => {
  const require = createRequire(import.meta.url);
  const root = dirname(dirname(fileURLToPath(import.meta.url)));
  // Each worker loads the addon itself and sums C over many threaded products (m > 48, m n k >= 2^18).
  const workerSource = `
    const { parentPort, workerData: w } = require('node:worker_threads');
    const addon = require(require(w.gypBuild).path(w.root));
    const a = Float32Array.from({ length: w.m * w.k }, (_, i) => ((i * w.seed) % 17) - 8);
    const b = Float32Array.from({ length: w.k * w.n }, (_, i) => ((i * 3 + w.seed) % 13) - 6);
    const c = new Float32Array(w.m * w.n);
    let sum = 0;
    for (let r = 0; r < w.rounds; r++) {
      addon.gemm(a, b, c, w.m, w.n, w.k, false, false, 1, w.m * w.k, w.k * w.n, false);
      for (const x of c) sum += x;
    }
    parentPort.postMessage(sum);
  `;

  it('two worker threads get the products they ask for', async () => {
    const before = gemmThreads();
    gemmThreads(Math.max(before, 3)); // a pool with workers even on a 1-core machine
    const shape = { m: 256, n: 256, k: 256, rounds: 200 };
    const expected = [5, 7].map((seed) => {
      const a = Float32Array.from({ length: shape.m * shape.k }, (_, i) => ((i * seed) % 17) - 8);
      const b = Float32Array.from({ length: shape.k * shape.n }, (_, i) => ((i * 3 + seed) % 13) - 6);
      const c = new Float32Array(shape.m * shape.n);
      sgemm(a, b, c, shape);
      return c.reduce((s, x) => s + x, 0) * shape.rounds;
    });
    const workers = [5, 7].map(
      (seed) =>
        new Worker(workerSource, {
          eval: true,
          workerData: { ...shape, seed, root, gypBuild: require.resolve('node-gyp-build') },
        }),
    );
    let timer: NodeJS.Timeout | undefined;
    try {
      const sums = await Promise.race([
        Promise.all(
          workers.map(
            (w) => new Promise<number>((resolve, reject) => w.on('message', resolve).on('error', reject)),
          ),
        ),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error('two threads multiplying at once hung')), 30_000);
        }),
      ]);
      expect(sums).toEqual(expected);
    } finally {
      clearTimeout(timer);
      await Promise.all(workers.map((w) => w.terminate()));
      gemmThreads(before);
    }
  });
});
