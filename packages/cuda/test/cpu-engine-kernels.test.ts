import { afterAll, describe, expect, it } from 'vitest';
import { type AttentionDims, type CpuInstructionSet, Device, type DeviceTensor } from '../src/index.js';
import { maxRelativeError, randomArray } from './helpers.js';

// Every op of the CPU engine against the CPU reference device (the oracle, itself checked against
// float64 JavaScript in llama-kernels.test.ts), on the same inputs, on every instruction set this CPU runs:
// shapes with partial tiles (GEMM panels, attention tiles of 64, vectors of 16), padding, GQA, both dtypes.
const reference = Device.cpu();
const LEVELS: CpuInstructionSet[] = ['generic', 'avx2', 'avx512', 'avx512-bf16'];
const engines = LEVELS.flatMap((level) => {
  try {
    return [{ level, device: Device.cpuEngine({ instructionSet: level }) }];
  } catch {
    return []; // a level above this CPU's: its kernels cannot run here
  }
});
afterAll(() => {
  reference.emptyCache();
  for (const e of engines) e.device.emptyCache();
});

type Float = 'float32' | 'bfloat16' | 'float16';
/** Agreement allowed: fp32 summation order, or one rounding of a 16-bit result either way. */
const TOL: Record<Float, number> = { float32: 3e-5, bfloat16: 8e-3, float16: 1e-3 };

/** The same values as a tensor on each device (rounded to `dtype` by both alike). */
function pair(values: Float32Array, shape: number[], dtype: Float | 'int32', device: Device) {
  const host = dtype === 'int32' ? Int32Array.from(values) : values;
  return [reference.tensor(host, shape, dtype), device.tensor(host, shape, dtype)] as const;
}

const largest = (x: Float32Array) => x.reduce((m, v) => Math.max(m, Math.abs(v)), 0);

/** Largest difference relative to the reference's largest magnitude, or `scale` (no blow-up near zero). */
function errorOf(got: Float32Array, want: Float32Array, scale = largest(want)): number {
  return maxRelativeError(got, want, Math.max(scale, 1e-30));
}

function expectClose(got: DeviceTensor, want: DeviceTensor, dtype: Float, factor = 1, scale?: number): void {
  const w = want.read();
  expect(errorOf(got.read(), w, scale ?? largest(w))).toBeLessThan(TOL[dtype] * factor);
}

it('finds the instruction sets this CPU runs; each engine names its level and its GEMM kernels', () => {
  expect(engines.length).toBeGreaterThanOrEqual(1);
  for (const { level, device } of engines) {
    expect(device.description.name).toBe(`CPU engine ${level}`);
    expect(device.description.gemmLibrary).toMatch(/^engine .* x\d+$/);
  }
  expect(() => Device.cpuEngine({ instructionSet: 'sse9' as CpuInstructionSet })).toThrow(
    /instructionSet must be/,
  );
});

for (const { level, device } of engines) {
  describe(`CPU engine ${level} against the reference device`, () => {
    describe('gemm', () => {
      const shapes = [
        { m: 37, n: 45, k: 70 },
        { m: 130, n: 65, k: 513 }, // odd k: the last bf16 pair is half zero
        { m: 5, n: 300, k: 2100 }, // k split in blocks
        { m: 97, n: 33, k: 1 },
      ];
      for (const ab of ['float32', 'bfloat16', 'float16'] as const)
        for (const { m, n, k } of shapes)
          for (const [transA, transB] of [
            [false, true],
            [true, false],
            [false, false],
            [true, true],
          ] as const) {
            it(`${ab} ${m}x${n}x${k} transA ${transA} transB ${transB}: fp32 and ${ab} C, alpha, beta`, () => {
              const [ar, ae] = pair(randomArray(m * k, m + k), transA ? [k, m] : [m, k], ab, device);
              const [br, be] = pair(randomArray(k * n, n + 7), transB ? [n, k] : [k, n], ab, device);
              for (const [cdt, alpha, beta] of [
                ['float32', 1, 0],
                ['float32', 0.5, 1],
                [ab, 1, 0],
                [ab, 0.25, 0.5],
              ] as const) {
                const start = randomArray(m * n, 99);
                const [cr, ce] = pair(start, [m, n], cdt, device);
                if (beta === 0) ce.fill(Number.NaN); // beta 0 never reads C
                const shape = { m, n, k, transA, transB, alpha, beta };
                reference.gemm(ar, br, cr, shape);
                device.gemm(ae, be, ce, shape);
                // relative to the largest |C|: fp32 sums of k products in another order
                expect(errorOf(ce.read(), cr.read())).toBeLessThan(
                  cdt === 'float32' ? 2e-6 * Math.sqrt(k) + 1e-6 : TOL[cdt],
                );
              }
            });
          }
      it('leading dimensions: operands and C as column blocks of wider rows (a fused projection)', () => {
        const m = 37,
          n = 45,
          k = 70;
        for (const ab of ['float32', 'bfloat16'] as const)
          for (const [transA, transB] of [
            [false, true],
            [true, false],
          ] as const) {
            const lda = (transA ? m : k) + 5,
              ldb = (transB ? k : n) + 3,
              ldc = n + 4;
            const [ar, ae] = pair(
              randomArray((transA ? k : m) * lda, 41),
              [(transA ? k : m) * lda],
              ab,
              device,
            );
            const [br, be] = pair(
              randomArray((transB ? n : k) * ldb, 42),
              [(transB ? n : k) * ldb],
              ab,
              device,
            );
            for (const [cdt, beta] of [
              ['float32', 0.5],
              [ab, 0],
            ] as const) {
              const [cr, ce] = pair(randomArray(m * ldc, 43), [m * ldc], cdt, device);
              const shape = { m, n, k, transA, transB, beta, lda, ldb, ldc };
              reference.gemm(ar, br, cr, shape);
              device.gemm(ae, be, ce, shape);
              // the columns past n of each C row are left alone by both
              expect(errorOf(ce.read(), cr.read())).toBeLessThan(cdt === 'float32' ? 2e-5 : TOL[cdt]);
            }
          }
      });
    });

    for (const dtype of ['float32', 'bfloat16'] as const) {
      describe(`${dtype} Llama ops`, () => {
        it('embedding (an id out of range gives a zero row) and its backward (repeated ids summed)', () => {
          const V = 11,
            H = 300;
          const [tr, te] = pair(randomArray(V * H, 1), [V, H], dtype, device);
          const idsHost = Float32Array.of(3, 0, 10, 3, 11, -1, 3);
          const [ir, ie] = pair(idsHost, [7], 'int32', device);
          for (const outDtype of ['float32', dtype] as const) {
            const [or, oe] = pair(new Float32Array(7 * H), [7, H], outDtype, device);
            reference.embedding(tr, ir, or);
            device.embedding(te, ie, oe);
            expect(oe.read()).toEqual(or.read());
          }
          const [gr, ge] = pair(randomArray(7 * H, 2), [7, H], dtype, device);
          const [dr, de] = pair(randomArray(V * H, 3), [V, H], 'float32', device);
          reference.embeddingBackward(gr, ir, dr);
          device.embeddingBackward(ge, ie, de);
          expect(de.read()).toEqual(dr.read()); // token order, as the reference
        });

        it('rmsNorm and its backward (dx set and accumulated, dWeight and none)', () => {
          const N = 70,
            H = 200;
          const [xr, xe] = pair(randomArray(N * H, 4, 3), [N, H], dtype, device);
          const [wr, we] = pair(randomArray(H, 5), [H], dtype, device);
          const [or, oe] = pair(new Float32Array(N * H), [N, H], dtype, device);
          const [sr, se] = pair(new Float32Array(N), [N], 'float32', device);
          reference.rmsNorm(xr, wr, or, sr, 1e-5);
          device.rmsNorm(xe, we, oe, se, 1e-5);
          expectClose(oe, or, dtype);
          expectClose(se, sr, 'float32');
          const [gr, ge] = pair(randomArray(N * H, 6), [N, H], dtype, device);
          for (const accumulate of [false, true]) {
            const [dxr, dxe] = pair(randomArray(N * H, 7), [N, H], dtype, device);
            const [dwr, dwe] = pair(randomArray(H, 8), [H], 'float32', device);
            reference.rmsNormBackward(gr, xr, wr, sr, dxr, dwr, accumulate);
            device.rmsNormBackward(ge, xe, we, se, dxe, accumulate ? null : dwe, accumulate);
            expectClose(dxe, dxr, dtype, 4);
            if (!accumulate) expectClose(dwe, dwr, 'float32', 4);
          }
        });

        it('addRmsNorm (the sum written over x) against add then rmsNorm', () => {
          const N = 70,
            H = 200;
          const [xr, xe] = pair(randomArray(N * H, 30, 3), [N, H], dtype, device);
          const [dr, de] = pair(randomArray(N * H, 31), [N, H], dtype, device);
          const [wr, we] = pair(randomArray(H, 32), [H], dtype, device);
          const [or, oe] = pair(new Float32Array(N * H), [N, H], dtype, device);
          const [sr, se] = pair(new Float32Array(N), [N], 'float32', device);
          reference.addRmsNorm(xr, dr, xr, wr, or, sr, 1e-5);
          device.addRmsNorm(xe, de, xe, we, oe, se, 1e-5);
          expect(xe.read()).toEqual(xr.read()); // one rounding of x + delta on both
          expectClose(oe, or, dtype);
          expectClose(se, sr, 'float32');
        });

        it('rope and its inverse', () => {
          const seqLen = 5,
            heads = 3,
            headDim = 18,
            N = 2 * seqLen;
          const half = headDim / 2;
          const angles = Float32Array.from(
            { length: 8 * half },
            (_, i) => Math.floor(i / half) * 0.3 * (1 + (i % half)),
          );
          const [cr, ce] = pair(angles.map(Math.cos), [8, half], 'float32', device);
          const [sr, se] = pair(angles.map(Math.sin), [8, half], 'float32', device);
          for (const inverse of [false, true]) {
            const [xr, xe] = pair(randomArray(N * heads * headDim, 9), [N, heads * headDim], dtype, device);
            reference.rope(xr, cr, sr, seqLen, heads, headDim, inverse);
            device.rope(xe, ce, se, seqLen, heads, headDim, inverse);
            expectClose(xe, xr, dtype);
            // q and k heads of fused rows with a v part after them, which stays as it is
            const stride = (heads + 1) * headDim;
            const [fr, fe] = pair(randomArray(N * stride, 33), [N, stride], dtype, device);
            reference.rope(fr, cr, sr, seqLen, heads, headDim, inverse, stride);
            device.rope(fe, ce, se, seqLen, heads, headDim, inverse, stride);
            expectClose(fe, fr, dtype);
          }
        });

        const attentionCases: Array<AttentionDims & { name: string; lengths_?: number[]; fused?: boolean }> =
          [
            {
              name: 'GQA 4/2, seq 130 (partial tiles), d 64',
              batch: 2,
              seqLen: 130,
              heads: 4,
              kvHeads: 2,
              headDim: 64,
            },
            {
              name: 'GQA 4/1, padding, d 8',
              batch: 3,
              seqLen: 70,
              heads: 4,
              kvHeads: 1,
              headDim: 8,
              lengths_: [70, 9, 1],
            },
            {
              name: 'MHA, not causal, padding, d 72',
              batch: 2,
              seqLen: 33,
              heads: 2,
              kvHeads: 2,
              headDim: 72,
              causal: false,
              lengths_: [20, 33],
            },
            { name: 'one token', batch: 1, seqLen: 1, heads: 3, kvHeads: 3, headDim: 16 },
            {
              name: 'GQA 6/2, q, k, v of fused rows, d 16',
              batch: 2,
              seqLen: 70,
              heads: 6,
              kvHeads: 2,
              headDim: 16,
              fused: true,
            },
          ];
        for (const c of attentionCases) {
          it(`attention and its backward: ${c.name}`, () => {
            const { batch: B, seqLen: S, heads, kvHeads, headDim: d } = c;
            const N = B * S,
              Q = heads * d,
              KV = kvHeads * d;
            // fused: q, k, v (and dq, dk, dv) are column blocks of rows of Q + 2 KV, as the device Llama runs
            const W = c.fused ? Q + 2 * KV : 0;
            const parts = (x: DeviceTensor) =>
              c.fused
                ? [0, Q, Q + KV].map((first, i) => x.view(first, [(N - 1) * W + (i === 0 ? Q : KV)]))
                : [x];
            const qkv = (seed: number, dev: 0 | 1) => {
              if (c.fused) return parts(pair(randomArray(N * W, seed, 2), [N, W], dtype, device)[dev]);
              return [
                pair(randomArray(N * Q, seed, 2), [N, Q], dtype, device)[dev],
                pair(randomArray(N * KV, seed + 1, 2), [N, KV], dtype, device)[dev],
                pair(randomArray(N * KV, seed + 2), [N, KV], dtype, device)[dev],
              ];
            };
            const [qr, kr, vr] = qkv(10, 0);
            const [qe, ke, ve] = qkv(10, 1);
            const lengths = c.lengths_
              ? pair(Float32Array.from(c.lengths_), [B], 'int32', device)
              : undefined;
            const dims = (which: 0 | 1): AttentionDims => ({
              ...c,
              lengths: lengths?.[which] ?? null,
              ...(c.fused ? { qStride: W, kvStride: W } : {}),
            });
            const [or, oe] = pair(new Float32Array(N * Q), [N, Q], dtype, device);
            const [lr, le] = pair(new Float32Array(B * heads * S), [B, heads, S], 'float32', device);
            reference.attention(qr!, kr!, vr!, or, lr, dims(0));
            device.attention(qe!, ke!, ve!, oe, le, dims(1));
            expectClose(oe, or, dtype, 4);
            expectClose(le, lr, 'float32', 4);
            const [gr, ge] = pair(randomArray(N * Q, 13), [N, Q], dtype, device);
            const grads = (dev: Device) =>
              c.fused
                ? parts(dev.empty([N * W], dtype))
                : [dev.empty([N, Q], dtype), dev.empty([N, KV], dtype), dev.empty([N, KV], dtype)];
            const [dqr, dkr, dvr] = grads(reference);
            const [dqe, dke, dve] = grads(device);
            reference.attentionBackward(qr!, kr!, vr!, or, gr, lr, dqr!, dkr!, dvr!, dims(0));
            device.attentionBackward(qe!, ke!, ve!, oe, ge, le, dqe!, dke!, dve!, dims(1));
            // against the largest gradient: with one visible key dq and dk are exact cancellations (P = 1, dP = D)
            const scale = Math.max(...[dqr!, dkr!, dvr!].map((t) => largest(t.read())));
            expectClose(dqe!, dqr!, dtype, 8, scale);
            expectClose(dke!, dkr!, dtype, 8, scale);
            expectClose(dve!, dvr!, dtype, 8, scale);
          });
        }

        it('swiglu and its backward over fused gate / up rows (the gradient over them), add (aliasing a), addBias, biasBackward', () => {
          const rows = 20,
            I = 450; // more than one row per task, a partial vector at the end of each half
          const [gur, gue] = pair(randomArray(rows * 2 * I, 14, 6), [rows, 2 * I], dtype, device);
          const [or, oe] = pair(new Float32Array(rows * I), [rows, I], dtype, device);
          reference.swiglu(gur, or);
          device.swiglu(gue, oe);
          expectClose(oe, or, dtype);
          const [dr, de] = pair(randomArray(rows * I, 16), [rows, I], dtype, device);
          const [dgr, dge] = pair(new Float32Array(rows * 2 * I), [rows, 2 * I], dtype, device);
          reference.swigluBackward(gur, dr, dgr);
          device.swigluBackward(gue, de, dge);
          expectClose(dge, dgr, dtype, 2);
          device.swigluBackward(gue, de, gue); // in place over gate_up, as the step runs it
          expect(gue.read()).toEqual(dge.read());
          const N = 9000;
          const [ar, ae] = pair(randomArray(N, 14, 6), [N], dtype, device);
          const [ur, ue] = pair(randomArray(N, 15, 2), [N], dtype, device);
          reference.add(ar, ur, ar);
          device.add(ae, ue, ae);
          expect(ae.read()).toEqual(ar.read());
          const C = 45;
          const [xr, xe] = pair(randomArray(200 * C, 17), [200, C], dtype, device);
          const [br, be] = pair(randomArray(C, 18), [C], dtype, device);
          reference.addBias(xr, br);
          device.addBias(xe, be);
          expect(xe.read()).toEqual(xr.read());
          const [dbr, dbe] = pair(randomArray(C, 19), [C], 'float32', device);
          reference.biasBackward(xr, dbr);
          device.biasBackward(xe, dbe);
          expectClose(dbe, dbr, 'float32');
          // one bias's columns of fused rows: a view from its first column, rows 3 C apart
          const [fr, fe] = pair(randomArray(200 * 3 * C, 34), [200 * 3 * C], dtype, device);
          const span = (x: DeviceTensor) => x.view(C, [199 * 3 * C + C]);
          reference.biasBackward(span(fr), dbr, 3 * C);
          device.biasBackward(span(fe), dbe, 3 * C);
          expectClose(dbe, dbr, 'float32');
        });

        it('crossEntropy (-100, a label past the vocabulary, gradScale 0 and 0.25), argmaxRows, sum', () => {
          const rows = 6,
            V = 5003;
          const values = randomArray(rows * V, 20, 8);
          values[2 * V + 17] = 40; // a dominant logit
          const labelsHost = Float32Array.of(3, -100, 17, 5002, 5003, 0);
          const [lr, le] = pair(labelsHost, [rows], 'int32', device);
          for (const gradScale of [0, 0.25]) {
            const [xr, xe] = pair(values, [rows, V], dtype, device);
            const [sr, se] = pair(new Float32Array(rows), [rows], 'float32', device);
            reference.crossEntropy(xr, lr, sr, gradScale);
            device.crossEntropy(xe, le, se, gradScale);
            const got = se.read(),
              want = sr.read();
            expect(Number.isNaN(got[4]!)).toBe(true);
            expect(
              errorOf(
                got.filter((_, i) => i !== 4),
                want.filter((_, i) => i !== 4),
              ),
            ).toBeLessThan(2e-6);
            expectClose(xe, xr, dtype, 2);
          }
          const [xr, xe] = pair(Float32Array.of(1, 5, 5, 2, Number.NaN, -1, -3, -2), [2, 4], dtype, device);
          const [ar, ae] = pair(new Float32Array(2), [2], 'int32', device);
          reference.argmaxRows(xr, ar);
          device.argmaxRows(xe, ae);
          expect([...ae.read()]).toEqual([1, 1]);
          expect([...ae.read()]).toEqual([...ar.read()]);
          const [br, be] = pair(randomArray(20000, 21, 100), [20000], dtype, device);
          expect(device.sum(be)).toBeCloseTo(reference.sum(br), 6);
        });
      });
    }

    describe('optimizer and tensor ops', () => {
      it('adamw: the master and its rounded weight bit for bit (bf16 and fp32 gradients; an fp32 weight as its own master)', () => {
        const n = 10_001;
        const args = {
          lr: 1e-3,
          beta1: 0.9,
          beta2: 0.999,
          eps: 1e-8,
          weightDecay: 0.01,
          step: 3,
          gradScale: 0.5,
        };
        for (const gradDtype of ['float32', 'bfloat16'] as const) {
          const [mr, me] = pair(randomArray(n, 22), [n], 'float32', device);
          const [wr, we] = pair(mr.read(), [n], 'bfloat16', device);
          const [gr, ge] = pair(randomArray(n, 23), [n], gradDtype, device);
          const [m1r, m1e] = pair(randomArray(n, 24, 0.1), [n], 'float32', device);
          const [v1r, v1e] = pair(randomArray(n, 25, 0.1).map(Math.abs), [n], 'float32', device);
          reference.adamw(mr, wr, gr, m1r, v1r, args);
          device.adamw(me, we, ge, m1e, v1e, args);
          for (const [e, r] of [
            [me, mr],
            [we, wr],
            [m1e, m1r],
            [v1e, v1r],
          ] as const)
            expect(e.readRaw()).toEqual(r.readRaw());
        }
        const [wr, we] = pair(randomArray(n, 26), [n], 'float32', device);
        const [gr, ge] = pair(randomArray(n, 27), [n], 'float32', device);
        const [m1r, m1e] = pair(new Float32Array(n), [n], 'float32', device);
        const [v1r, v1e] = pair(new Float32Array(n), [n], 'float32', device);
        reference.adamw(null, wr, gr, m1r, v1r, { ...args, step: 1 });
        device.adamw(null, we, ge, m1e, v1e, { ...args, step: 1 });
        expect(we.readRaw()).toEqual(wr.readRaw());
      });

      it('sumSquares, scale, accumulate (fp32 and bf16 buffers), cast, fill, sparseAdam (the reference loop, delegated)', () => {
        const n = 20_000;
        const [ar, ae] = pair(randomArray(n, 28, 3), [n], 'bfloat16', device);
        const [br, be] = pair(randomArray(n, 29), [n], 'float32', device);
        expect(device.sumSquares([ae, be]) / reference.sumSquares([ar, br])).toBeCloseTo(1, 12);
        reference.scale(ar, 0.3);
        device.scale(ae, 0.3);
        expect(ae.readRaw()).toEqual(ar.readRaw());
        reference.accumulate(br, ar, 0.5);
        device.accumulate(be, ae, 0.5);
        expect(be.readRaw()).toEqual(br.readRaw());
        // into a 16-bit gradient buffer: the sum in fp32, rounded once
        const [hr, he] = pair(randomArray(n, 35), [n], 'bfloat16', device);
        reference.accumulate(hr, br, 0.25);
        device.accumulate(he, be, 0.25);
        expect(he.readRaw()).toEqual(hr.readRaw());
        for (const dtype of ['bfloat16', 'float16', 'float32'] as const) {
          const cr = reference.castTo(br, dtype);
          const ce = device.castTo(be, dtype);
          expect(ce.readRaw()).toEqual(cr.readRaw());
          ce.fill(0.1);
          cr.fill(0.1);
          expect(ce.readRaw()).toEqual(cr.readRaw());
        }
        const [ir, ie] = pair(Float32Array.of(5, 0, 19_999), [3], 'int32', device);
        const [mr, me] = pair(new Float32Array(3), [3], 'float32', device);
        const [vr, ve] = pair(new Float32Array(3), [3], 'float32', device);
        const [wr, we] = pair(br.read(), [n], 'bfloat16', device);
        const sparse = { lr: 0.01, beta1: 0.9, beta2: 0.99, eps: 1e-8, step: 1 };
        reference.sparseAdam(br, wr, ar, ir, mr, vr, sparse);
        device.sparseAdam(be, we, ae, ie, me, ve, sparse);
        expect(be.readRaw()).toEqual(br.readRaw());
        expect(we.readRaw()).toEqual(wr.readRaw());
      });
    });
  });
}
