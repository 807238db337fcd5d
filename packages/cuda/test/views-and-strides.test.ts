import { afterAll, describe, expect, it } from 'vitest';
import { Device } from '../src/index.js';
import { randomArray } from './helpers.js';

// What the fused projections of DeviceLlama stand on, on the CPU device (the C++ references): views of one
// allocation, GEMMs over column blocks (leading dimensions), attention, RoPE and bias gradients over strided
// rows. Each strided call is checked against the same call on packed copies.
const device = Device.cpu();
afterAll(() => device.emptyCache());

/** Columns [first, first + width) of a row-major [rows, stride] matrix, packed. */
function columns(
  values: Float32Array,
  rows: number,
  stride: number,
  first: number,
  width: number,
): Float32Array {
  const out = new Float32Array(rows * width);
  for (let r = 0; r < rows; r++)
    out.set(values.subarray(r * stride + first, r * stride + first + width), r * width);
  return out;
}

describe('tensor views', () => {
  it('share their allocation: a write through one is seen by the others; the memory goes back with the last', () => {
    const before = device.memory().byKind.weights;
    const whole = device.zeros([10], 'float32', 'weights');
    const a = whole.view(0, [2, 2]);
    const b = whole.view(4, [6]);
    whole.free();
    expect(device.memory().byKind.weights - before).toBe(40);
    b.write(Float32Array.from({ length: 6 }, (_, i) => i + 1));
    const reach = a.view(4, [2]); // past a, inside the allocation
    expect([...reach.read()]).toEqual([1, 2]);
    a.free();
    expect(device.memory().byKind.weights - before).toBe(40);
    b.free();
    reach.free();
    expect(device.memory().byKind.weights).toBe(before);
  });

  it('never reach past the allocation, and name the bound', () => {
    const t = device.zeros([8], 'bfloat16');
    expect(() => t.view(5, [4])).toThrow(
      "view: elements [5, 9) from the tensor's start reach past its memory (8 elements)",
    );
    expect(() => t.view(-1, [2])).toThrow('view offset');
    t.free();
  });
});

describe('strided GEMM operands', () => {
  it('gemm reads and writes column blocks through leading dimensions, every transpose', () => {
    const [m, n, k, stride] = [5, 3, 4, 9];
    const wide = randomArray(12 * stride, 1);
    const big = device.tensor(wide, [12, stride], 'float32');
    for (const [transA, transB] of [
      [false, false],
      [true, false],
      [false, true],
      [true, true],
    ] as const) {
      // A [m, k] (or [k, m]) at column 2 of the wide matrix; B [k, n] (or [n, k]) at column 5; C packed.
      const [aRows, aCols] = transA ? [k, m] : [m, k];
      const [bRows, bCols] = transB ? [n, k] : [k, n];
      const a = big.view(2, [(aRows - 1) * stride + aCols]);
      const b = big.view(5, [(bRows - 1) * stride + bCols]);
      const c = device.zeros([m, n], 'float32');
      device.gemm(a, b, c, { m, n, k, transA, transB, lda: stride, ldb: stride });
      const packedA = device.tensor(columns(wide, aRows, stride, 2, aCols), [aRows, aCols], 'float32');
      const packedB = device.tensor(columns(wide, bRows, stride, 5, bCols), [bRows, bCols], 'float32');
      const want = device.zeros([m, n], 'float32');
      device.gemm(packedA, packedB, want, { m, n, k, transA, transB });
      expect(c.read()).toEqual(want.read());
    }
    // C as a column block: only its columns change.
    const out = device.zeros([3, 7], 'float32');
    const block = out.view(2, [2 * 7 + 3]);
    device.gemm(
      device.tensor(randomArray(6, 2), [3, 2], 'float32'),
      device.tensor(randomArray(6, 3), [2, 3], 'float32'),
      block,
      {
        m: 3,
        n: 3,
        k: 2,
        ldc: 7,
      },
    );
    const got = out.read();
    for (let r = 0; r < 3; r++) for (const col of [0, 1, 5, 6]) expect(got[r * 7 + col]).toBe(0);
    expect(() =>
      device.gemm(device.zeros([6], 'float32'), device.zeros([6], 'float32'), device.zeros([9], 'float32'), {
        m: 3,
        n: 3,
        k: 2,
        lda: 1,
      }),
    ).toThrow('gemm: the leading dimension of A (1) is shorter than its rows (2)');
  });
});

describe('strided rows', () => {
  it('attention over q / k / v column blocks of one fused buffer equals attention over packed copies', () => {
    const [batch, seqLen, heads, kvHeads, headDim] = [2, 7, 4, 2, 8];
    const [Q, KV] = [heads * headDim, kvHeads * headDim];
    const W = Q + 2 * KV;
    const n = batch * seqLen;
    const fusedValues = randomArray(n * W, 4, 2);
    const dOutValues = randomArray(n * Q, 5);
    const lengths = device.tensor(Int32Array.of(7, 5), [2], 'int32');
    const dims = { batch, seqLen, heads, kvHeads, headDim, lengths };
    for (const dtype of ['float32', 'bfloat16'] as const) {
      const fused = device.tensor(fusedValues, [n, W], dtype);
      const [q, k, v] = [
        fused.view(0, [(n - 1) * W + Q]),
        fused.view(Q, [(n - 1) * W + KV]),
        fused.view(Q + KV, [(n - 1) * W + KV]),
      ];
      const packed = [
        device.tensor(columns(fusedValues, n, W, 0, Q), [n, Q], dtype),
        device.tensor(columns(fusedValues, n, W, Q, KV), [n, KV], dtype),
        device.tensor(columns(fusedValues, n, W, Q + KV, KV), [n, KV], dtype),
      ] as const;
      const [out, lse, outP, lseP] = [
        device.empty([n, Q], dtype),
        device.empty([batch, heads, seqLen], 'float32'),
        device.empty([n, Q], dtype),
        device.empty([batch, heads, seqLen], 'float32'),
      ];
      device.attention(q, k, v, out, lse, { ...dims, qStride: W, kvStride: W });
      device.attention(...packed, outP, lseP, dims);
      expect(out.read()).toEqual(outP.read());
      expect(lse.read()).toEqual(lseP.read());
      // The backward writes dq | dk | dv into the column blocks of one buffer.
      const dOut = device.tensor(dOutValues, [n, Q], dtype);
      const dFused = device.zeros([n, W], dtype);
      const [dq, dk, dv] = [
        dFused.view(0, [(n - 1) * W + Q]),
        dFused.view(Q, [(n - 1) * W + KV]),
        dFused.view(Q + KV, [(n - 1) * W + KV]),
      ];
      device.attentionBackward(q, k, v, out, dOut, lse, dq, dk, dv, { ...dims, qStride: W, kvStride: W });
      const [dqP, dkP, dvP] = [
        device.empty([n, Q], dtype),
        device.empty([n, KV], dtype),
        device.empty([n, KV], dtype),
      ];
      device.attentionBackward(...packed, outP, dOut, lseP, dqP, dkP, dvP, dims);
      const got = dFused.read();
      expect(columns(got, n, W, 0, Q)).toEqual(dqP.read());
      expect(columns(got, n, W, Q, KV)).toEqual(dkP.read());
      expect(columns(got, n, W, Q + KV, KV)).toEqual(dvP.read());
    }
    expect(() =>
      device.attention(
        device.zeros([n * Q], 'float32'),
        device.zeros([n * KV], 'float32'),
        device.zeros([n * KV], 'float32'),
        device.zeros([n * Q], 'float32'),
        device.zeros([batch * heads * seqLen], 'float32'),
        { ...dims, qStride: W },
      ),
    ).toThrow(`attention: q has ${n * Q} elements, fewer than the ${(n - 1) * W + Q} its strided rows span`);
  });

  it('rope rotates q and k of fused rows in one pass and leaves v alone; biasBackward sums a column block', () => {
    const [seqLen, heads, kvHeads, headDim] = [3, 2, 1, 4];
    const W = (heads + 2 * kvHeads) * headDim;
    const n = 2 * seqLen;
    const cos = device.tensor(randomArray(seqLen * 2, 6), [seqLen, 2], 'float32');
    const sin = device.tensor(randomArray(seqLen * 2, 7), [seqLen, 2], 'float32');
    const values = randomArray(n * W, 8);
    const fused = device.tensor(values, [n, W], 'float32');
    device.rope(fused, cos, sin, seqLen, heads + kvHeads, headDim, false, W);
    const qk = device.tensor(
      columns(values, n, W, 0, (heads + kvHeads) * headDim),
      [n, (heads + kvHeads) * headDim],
      'float32',
    );
    device.rope(qk, cos, sin, seqLen, heads + kvHeads, headDim, false);
    const got = fused.read();
    expect(columns(got, n, W, 0, (heads + kvHeads) * headDim)).toEqual(qk.read());
    expect(columns(got, n, W, (heads + kvHeads) * headDim, kvHeads * headDim)).toEqual(
      columns(values, n, W, (heads + kvHeads) * headDim, kvHeads * headDim),
    );
    const dBias = device.zeros([headDim], 'float32');
    device.biasBackward(fused.view(headDim, [(n - 1) * W + headDim]), dBias, W);
    const want = new Float32Array(headDim);
    for (let r = 0; r < n; r++)
      for (let c = 0; c < headDim; c++) want[c] = want[c]! + got[r * W + headDim + c]!;
    const sums = dBias.read();
    for (let c = 0; c < headDim; c++) expect(sums[c]).toBeCloseTo(want[c]!, 5);
  });
});
