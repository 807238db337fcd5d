import { adamwUpdate, resolveAdamWConfig, roundToBfloat16, roundToFloat16 } from '@badam/core';
import { sparseAdamUpdate } from '@badam/ratio';
import { afterAll, describe, expect, it } from 'vitest';
import { Device } from '../src/index.js';
import { maxRelativeError, randomArray } from './helpers.js';

// The CPU device runs the C++ reference kernels (its GEMMs: @badam/native's SGEMM, see cpu-gemm.test.ts): here
// they are checked against @badam/core's and @badam/ratio's JavaScript formulas and plain JS loops —
// independent implementations of the same math.
const device = Device.cpu();
afterAll(() => device.emptyCache());

function naiveGemm(
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
      for (let p = 0; p < k; p++) s += a[ta ? p * m + i : i * k + p]! * b[tb ? j * k + p : p * n + j]!;
      c[i * n + j] = s;
    }
  return c;
}

describe('casts round to nearest even, exactly as @badam/core', () => {
  const special = Float32Array.of(
    0,
    -0,
    1,
    -1,
    1.00390625,
    1.005859375,
    1.0078125,
    3.140625,
    65504,
    65519.99,
    65520,
    1e5,
    -1e5,
    6.1e-5,
    5.96e-8,
    2.98e-8,
    1e-8,
    1e-40,
    3.4e38,
    Number.POSITIVE_INFINITY,
    Number.NEGATIVE_INFINITY,
    0.1,
    1 / 3,
  );
  const values = Float32Array.from([
    ...special,
    ...randomArray(4096, 5, 1000),
    ...randomArray(1024, 6, 1e-5),
  ]);

  it('float32 -> bfloat16', () => {
    const t = device.tensor(values, [values.length], 'bfloat16');
    expect(Array.from(t.read())).toEqual(Array.from(values, roundToBfloat16));
    t.free();
  });

  it('float32 -> float16, subnormals and overflow included', () => {
    const t = device.tensor(values, [values.length], 'float16');
    expect(Array.from(t.read())).toEqual(Array.from(values, roundToFloat16));
    t.free();
  });

  it('the cast kernel between every pair of float dtypes, and NaN stays NaN', () => {
    const src = device.tensor(Float32Array.from([...values, Number.NaN]), [values.length + 1], 'float32');
    for (const dtype of ['bfloat16', 'float16', 'float32'] as const) {
      const round =
        dtype === 'bfloat16' ? roundToBfloat16 : dtype === 'float16' ? roundToFloat16 : Math.fround;
      const mid = device.castTo(src, dtype);
      const back = device.castTo(mid, 'float32');
      const out = back.read();
      expect(Array.from(out.subarray(0, values.length))).toEqual(Array.from(values, round));
      expect(Number.isNaN(out[values.length]!)).toBe(true);
      mid.free();
      back.free();
    }
    src.free();
  });
});

describe('gemm: fp32 accumulation of bf16 / fp16 / fp32 operands', () => {
  for (const dtype of ['bfloat16', 'float16', 'float32'] as const) {
    for (const [ta, tb] of [
      [false, false],
      [true, false],
      [false, true],
      [true, true],
    ] as const) {
      it(`${dtype}, transA ${ta}, transB ${tb}, alpha and beta`, () => {
        const [m, n, k] = [13, 29, 37];
        const round =
          dtype === 'bfloat16' ? roundToBfloat16 : dtype === 'float16' ? roundToFloat16 : Math.fround;
        const aHost = randomArray(m * k, 1).map(round);
        const bHost = randomArray(k * n, 2).map(round);
        const cStart = randomArray(m * n, 3);
        const a = device.tensor(aHost, [m * k], dtype);
        const b = device.tensor(bHost, [k * n], dtype);
        const c = device.tensor(cStart, [m, n], 'float32');
        device.gemm(a, b, c, { m, n, k, transA: ta, transB: tb, alpha: 0.5, beta: 2 });
        const expected = naiveGemm(aHost, bHost, m, n, k, ta, tb).map((x, i) => 0.5 * x + 2 * cStart[i]!);
        expect(maxRelativeError(c.read(), expected, 1e-3)).toBeLessThan(1e-4);
        // C in the operands' dtype: the fp32 result rounded once.
        if (dtype !== 'float32') {
          const c16 = device.zeros([m, n], dtype);
          device.gemm(a, b, c16, { m, n, k, transA: ta, transB: tb });
          const exact = naiveGemm(aHost, bHost, m, n, k, ta, tb);
          expect(maxRelativeError(c16.read(), Array.from(exact, round), 1e-2)).toBeLessThan(
            dtype === 'bfloat16' ? 8e-3 : 1e-3,
          );
          c16.free();
        }
        for (const t of [a, b, c]) t.free();
      });
    }
  }
});

describe('fused AdamW matches core adamwUpdate (torch.optim.AdamW)', () => {
  const n = 5000;
  const config = resolveAdamWConfig({ beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });

  for (const [weightDtype, gradDtype] of [
    ['float32', 'float32'],
    ['bfloat16', 'float32'],
    ['bfloat16', 'bfloat16'],
    ['float16', 'float32'],
  ] as const) {
    it(`${weightDtype} weight, ${gradDtype} gradient: masters, moments and the rounded weight over 5 steps`, () => {
      const round =
        weightDtype === 'bfloat16'
          ? roundToBfloat16
          : weightDtype === 'float16'
            ? roundToFloat16
            : Math.fround;
      const start = randomArray(n, 11).map(round);
      const weight = device.tensor(start, [n], weightDtype, 'weights');
      const master = weightDtype === 'float32' ? null : device.castTo(weight, 'float32', 'masters');
      const m = device.zeros([n], 'float32', 'optimizerState');
      const v = device.zeros([n], 'float32', 'optimizerState');
      const js = { p: Float32Array.from(start), m: new Float32Array(n), v: new Float32Array(n) };
      for (let step = 1; step <= 5; step++) {
        const g = randomArray(n, 100 + step, 0.5);
        const gRounded = gradDtype === 'bfloat16' ? g.map(roundToBfloat16) : g;
        const grad = device.tensor(g, [n], gradDtype, 'gradients');
        const lr = 1e-2 / step;
        device.adamw(master, weight, grad, m, v, { lr, ...config, step, gradScale: 0.5 });
        adamwUpdate(js.p, gRounded, js.m, js.v, config, { lr, step, gradientScale: 0.5, decay: true });
        grad.free();
      }
      const updated = master ? master.read() : weight.read();
      // fp32 arithmetic here, double in JavaScript: a few fp32 ulps apart.
      expect(maxRelativeError(updated, js.p, 1e-3)).toBeLessThan(1e-5);
      expect(maxRelativeError(m.read(), js.m, 1e-3)).toBeLessThan(1e-5);
      expect(maxRelativeError(v.read(), js.v, 1e-5)).toBeLessThan(1e-5);
      // The weight is the master rounded in the same pass.
      if (master) expect(Array.from(weight.read())).toEqual(Array.from(master.read(), round));
      for (const t of [weight, m, v, ...(master ? [master] : [])]) t.free();
    });
  }

  it('without weight decay on a no-decay parameter', () => {
    const start = randomArray(64, 3);
    const weight = device.tensor(start, [64], 'float32');
    const m = device.zeros([64], 'float32');
    const v = device.zeros([64], 'float32');
    const g = randomArray(64, 4);
    device.adamw(null, weight, device.tensor(g, [64], 'float32'), m, v, {
      lr: 0.1,
      ...config,
      weightDecay: 0,
      step: 1,
      gradScale: 1,
    });
    const js = Float32Array.from(start);
    adamwUpdate(js, g, new Float32Array(64), new Float32Array(64), config, {
      lr: 0.1,
      step: 1,
      gradientScale: 1,
      decay: false,
    });
    expect(maxRelativeError(weight.read(), js, 1e-3)).toBeLessThan(1e-5);
  });
});

describe('masked sparse Adam matches @badam/ratio sparseAdamUpdate', () => {
  it('fp32 param with compact moments over 4 steps, and the rounded bf16 weight', () => {
    const n = 3000;
    const indices = Int32Array.from({ length: 300 }, (_, j) => (j * 7 + 11) % n);
    const start = randomArray(n, 21);
    const param = device.tensor(start, [n], 'float32', 'masters');
    const weight = device.tensor(start, [n], 'bfloat16', 'weights');
    const idx = device.tensor(indices, [indices.length], 'int32');
    const m = device.zeros([indices.length], 'float32');
    const v = device.zeros([indices.length], 'float32');
    const js = {
      p: Float32Array.from(start),
      m: new Float32Array(indices.length),
      v: new Float32Array(indices.length),
    };
    const config = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8 };
    for (let step = 1; step <= 4; step++) {
      const g = randomArray(n, 40 + step);
      device.sparseAdam(param, weight, device.tensor(g, [n], 'float32'), idx, m, v, { ...config, step });
      sparseAdamUpdate(js.p, g, indices, js.m, js.v, config, step);
    }
    expect(maxRelativeError(param.read(), js.p, 1e-3)).toBeLessThan(1e-5);
    expect(maxRelativeError(m.read(), js.m, 1e-3)).toBeLessThan(1e-5);
    const w = weight.read();
    const masked = new Set(indices);
    for (let i = 0; i < n; i++)
      expect(w[i]).toBe(roundToBfloat16(masked.has(i) ? param.read()[i]! : start[i]!));
  });

  it('rejects an index outside the parameter', () => {
    const param = device.zeros([10], 'float32');
    const idx = device.tensor(Int32Array.of(3, 10), [2], 'int32');
    const m = device.zeros([2], 'float32');
    expect(() =>
      device.sparseAdam(param, null, device.zeros([10], 'float32'), idx, m, device.zeros([2], 'float32'), {
        lr: 1,
        beta1: 0.9,
        beta2: 0.9,
        eps: 1e-8,
        step: 1,
      }),
    ).toThrow('sparseAdam: index 10 is outside the param');
  });
});

describe('reductions and elementwise kernels', () => {
  it('sumSquares over several tensors of mixed dtype equals a double-precision sum', () => {
    const a = randomArray(10_001, 7);
    const b = randomArray(333, 8).map(roundToBfloat16);
    const expected = [...a, ...b].reduce((s, x) => s + x * x, 0);
    const got = device.sumSquares([
      device.tensor(a, [a.length], 'float32'),
      device.tensor(b, [b.length], 'bfloat16'),
    ]);
    expect(Math.abs(got - expected) / expected).toBeLessThan(1e-12);
    expect(device.globalNorm([])).toBe(0);
  });

  it('scale and accumulate', () => {
    const x = randomArray(100, 9);
    const y = randomArray(100, 10).map(roundToBfloat16);
    const dst = device.tensor(x, [100], 'float32');
    device.accumulate(dst, device.tensor(y, [100], 'bfloat16'), 0.25);
    device.scale(dst, 2);
    expect(
      maxRelativeError(
        dst.read(),
        Array.from(x, (v, i) => Math.fround(Math.fround(v + y[i]! * 0.25) * 2)),
        1e-6,
      ),
    ).toBeLessThan(1e-6);
  });
});

describe('bad input is an error that names the problem', () => {
  it('size mismatches, freed tensors, wrong dtypes, other devices', () => {
    const a = device.zeros([4, 4], 'bfloat16');
    const c = device.zeros([4, 4], 'float32');
    expect(() => device.gemm(a, a, c, { m: 4, n: 4, k: 5 })).toThrow('gemm: sizes do not match m, n, k');
    expect(() => device.gemm(a, device.zeros([16], 'float32'), c, { m: 4, n: 4, k: 4 })).toThrow(
      'gemm: A and B must share a float dtype',
    );
    expect(() => a.write(new Float32Array(3))).toThrow('write: 3 values for a tensor of 16');
    expect(() => device.empty([2, 0], 'float32')).toThrow('positive integer dimensions');
    const other = Device.cpu();
    expect(() => device.accumulate(c, other.zeros([4, 4], 'float32'))).toThrow('a tensor of this cpu device');
    c.free();
    expect(() => c.read()).toThrow('it was freed');
    const w = device.zeros([8], 'bfloat16');
    expect(() =>
      device.adamw(
        null,
        w,
        device.zeros([8], 'float32'),
        device.zeros([8], 'float32'),
        device.zeros([8], 'float32'),
        { lr: 1, beta1: 0.9, beta2: 0.9, eps: 1e-8, weightDecay: 0, step: 1, gradScale: 1 },
      ),
    ).toThrow('a 16-bit weight needs an fp32 master');
  });
});
