import { roundToBfloat16 } from '@badam/core';
import { afterAll, describe, expect, it } from 'vitest';
import { type AttentionDims, Device } from '../src/index.js';
import { maxRelativeError, randomArray } from './helpers.js';

// The Llama ops on the CPU device (the C++ references) against straightforward JavaScript
// written here from the formulas, in float64: full score matrices, explicit Jacobians, finite differences.
const device = Device.cpu();
afterAll(() => device.emptyCache());

type Act = 'float32' | 'bfloat16';
const ACTS: Act[] = ['float32', 'bfloat16'];
const round = (dtype: Act) => (dtype === 'bfloat16' ? roundToBfloat16 : Math.fround);
/** Random values already representable in `dtype`, so JS and the device start from the same inputs. */
const randomIn = (dtype: Act, n: number, seed: number, scale = 1) =>
  randomArray(n, seed, scale).map(round(dtype));
/** Relative error allowed against a float64 result: a few fp32 ulps, or one bf16 rounding and change. */
const TOL: Record<Act, number> = { float32: 2e-5, bfloat16: 1.6e-2 };
const ints = (values: number[]) => device.tensor(Int32Array.from(values), [values.length], 'int32');

describe('embedding', () => {
  it('gathers rows of a bf16 table into fp32 and bf16 outputs; an id out of range gives a zero row', () => {
    const [vocab, hidden] = [11, 8];
    const tableHost = randomIn('bfloat16', vocab * hidden, 1);
    const table = device.tensor(tableHost, [vocab, hidden], 'bfloat16');
    const idList = [3, 0, 10, 3, 7, 11];
    for (const dtype of ACTS) {
      const out = device.empty([idList.length, hidden], dtype).fill(Number.NaN);
      device.embedding(table, ints(idList), out);
      const got = out.read();
      idList.forEach((id, n) => {
        for (let c = 0; c < hidden; c++)
          expect(got[n * hidden + c]).toBe(id < vocab ? tableHost[id * hidden + c] : 0);
      });
    }
  });

  it('backward adds each row of dOut into the table row of its id, repeated ids summed, onto what was there', () => {
    const [vocab, hidden] = [6, 5];
    const idList = [2, 5, 2, 0, 2];
    for (const dtype of ACTS) {
      const dOutHost = randomIn(dtype, idList.length * hidden, 2);
      const start = randomArray(vocab * hidden, 3);
      const dTable = device.tensor(start, [vocab, hidden], 'float32');
      device.embeddingBackward(device.tensor(dOutHost, [idList.length, hidden], dtype), ints(idList), dTable);
      const want = Float64Array.from(start);
      idList.forEach((id, n) => {
        for (let c = 0; c < hidden; c++) want[id * hidden + c]! += dOutHost[n * hidden + c]!;
      });
      expect(maxRelativeError(dTable.read(), want, 1e-3)).toBeLessThan(1e-6);
    }
  });
});

describe('rmsNorm (HF LlamaRMSNorm)', () => {
  const [rows, hidden, eps] = [5, 24, 1e-5];

  function rmsForward(x: Float32Array, w: Float32Array, dtype: Act) {
    const out = new Float64Array(x.length);
    const rstd = new Float64Array(rows);
    for (let n = 0; n < rows; n++) {
      let ss = 0;
      for (let c = 0; c < hidden; c++) ss += x[n * hidden + c]! ** 2;
      rstd[n] = 1 / Math.sqrt(ss / hidden + eps);
      for (let c = 0; c < hidden; c++)
        out[n * hidden + c] = w[c]! * round(dtype)(x[n * hidden + c]! * rstd[n]!);
    }
    return { out, rstd };
  }

  for (const dtype of ACTS) {
    it(`${dtype}: out = weight * round(x * rstd), and rstd`, () => {
      const x = randomIn(dtype, rows * hidden, 4, 3);
      const w = randomIn(dtype, hidden, 5);
      const out = device.empty([rows, hidden], dtype);
      const rstd = device.empty([rows], 'float32');
      device.rmsNorm(
        device.tensor(x, [rows, hidden], dtype),
        device.tensor(w, [hidden], dtype),
        out,
        rstd,
        eps,
      );
      const want = rmsForward(x, w, dtype);
      expect(maxRelativeError(rstd.read(), want.rstd)).toBeLessThan(1e-5);
      expect(maxRelativeError(out.read(), want.out, 1e-2)).toBeLessThan(TOL[dtype]);
    });

    it(`${dtype}: backward against the explicit Jacobian; dx accumulates on request, dWeight always`, () => {
      const x = randomIn(dtype, rows * hidden, 6, 2);
      const w = randomIn(dtype, hidden, 7);
      const g = randomIn(dtype, rows * hidden, 8);
      const xT = device.tensor(x, [rows, hidden], dtype);
      const wT = device.tensor(w, [hidden], dtype);
      const rstd = device.empty([rows], 'float32');
      device.rmsNorm(xT, wT, device.empty([rows, hidden], dtype), rstd, eps);
      // dx_i = sum_j g_j w_j d(x_j r)/dx_i, with d(x_j r)/dx_i = r [i = j] - x_i x_j r^3 / H.
      const { rstd: r } = rmsForward(x, w, dtype);
      const dx = new Float64Array(rows * hidden);
      const dWeight = new Float64Array(hidden);
      for (let n = 0; n < rows; n++) {
        const rn = r[n]!;
        for (let i = 0; i < hidden; i++) {
          let s = 0;
          for (let j = 0; j < hidden; j++) {
            const jac = (i === j ? rn : 0) - (x[n * hidden + i]! * x[n * hidden + j]! * rn ** 3) / hidden;
            s += g[n * hidden + j]! * w[j]! * jac;
          }
          dx[n * hidden + i] = s;
          dWeight[i]! += g[n * hidden + i]! * x[n * hidden + i]! * rn;
        }
      }
      const dxT = device.empty([rows, hidden], dtype);
      const dWeightT = device.zeros([hidden], 'float32');
      const gT = device.tensor(g, [rows, hidden], dtype);
      device.rmsNormBackward(gT, xT, wT, rstd, dxT, dWeightT, false);
      expect(maxRelativeError(dxT.read(), dx, 5e-2)).toBeLessThan(TOL[dtype]);
      expect(maxRelativeError(dWeightT.read(), dWeight, 1e-2)).toBeLessThan(1e-4);
      // Again with accumulation into dx and dWeight, and once without dWeight.
      const first = dxT.read();
      device.rmsNormBackward(gT, xT, wT, rstd, dxT, dWeightT, true);
      device.rmsNormBackward(gT, xT, wT, rstd, dxT, null, true);
      const twice = Array.from(dWeight, (v) => 2 * v);
      expect(maxRelativeError(dWeightT.read(), twice, 1e-2)).toBeLessThan(1e-4);
      const thrice = Array.from(dx, (v) => 3 * v);
      expect(maxRelativeError(dxT.read(), thrice, 5e-2)).toBeLessThan(dtype === 'float32' ? 1e-4 : 4e-2);
      expect(first.length).toBe(rows * hidden);
    });
  }
});

/** cos / sin [maxPos, d/2] of Llama 3.1's scaled rope (HF _compute_llama3_parameters), in float64. */
function llama3RopeTables(maxPos: number, headDim: number, theta = 500000) {
  const [factor, lowFreqFactor, highFreqFactor, originalMax] = [8, 1, 4, 8192];
  const lowWavelen = originalMax / lowFreqFactor;
  const highWavelen = originalMax / highFreqFactor;
  const half = headDim / 2;
  const invFreq = Array.from({ length: half }, (_, i) => {
    const f = 1 / theta ** ((2 * i) / headDim);
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highWavelen) return f;
    if (wavelen > lowWavelen) return f / factor;
    const smooth = (originalMax / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
    return (1 - smooth) * (f / factor) + smooth * f;
  });
  const cos = new Float32Array(maxPos * half);
  const sin = new Float32Array(maxPos * half);
  for (let p = 0; p < maxPos; p++)
    for (let i = 0; i < half; i++) {
      cos[p * half + i] = Math.cos(p * invFreq[i]!);
      sin[p * half + i] = Math.sin(p * invFreq[i]!);
    }
  return { cos, sin, invFreq };
}

describe('rope (rotate_half) with a llama3-scaled table', () => {
  // A table past 8192 positions, so the far-position case below turns the scaled frequencies a lot.
  const [batch, seqLen, heads, headDim] = [2, 5, 3, 16];
  const maxPos = 9000;
  const { cos, sin, invFreq } = llama3RopeTables(maxPos, headDim);
  const cosT = device.tensor(cos, [maxPos, headDim / 2], 'float32');
  const sinT = device.tensor(sin, [maxPos, headDim / 2], 'float32');

  it('the table has scaled, unscaled and smoothed frequencies', () => {
    const plain = Array.from({ length: headDim / 2 }, (_, i) => 1 / 500000 ** ((2 * i) / headDim));
    expect(invFreq[0]).toBe(plain[0]);
    expect(invFreq.at(-1)).toBeCloseTo(plain.at(-1)! / 8, 15);
    expect(invFreq.some((f, i) => f !== plain[i] && Math.abs(f - plain[i]! / 8) > 1e-18)).toBe(true);
  });

  for (const dtype of ACTS) {
    it(`${dtype}: rotates each half pair at position n mod seqLen; inverse rotates back`, () => {
      const n = batch * seqLen;
      const x = randomIn(dtype, n * heads * headDim, 9);
      const t = device.tensor(x, [n, heads * headDim], dtype);
      device.rope(t, cosT, sinT, seqLen, heads, headDim);
      const want = new Float64Array(x.length);
      const half = headDim / 2;
      for (let tok = 0; tok < n; tok++) {
        const pos = tok % seqLen;
        for (let h = 0; h < heads; h++)
          for (let i = 0; i < half; i++) {
            const a = (tok * heads + h) * headDim + i;
            const angle = pos * invFreq[i]!;
            want[a] = x[a]! * Math.cos(angle) - x[a + half]! * Math.sin(angle);
            want[a + half] = x[a + half]! * Math.cos(angle) + x[a]! * Math.sin(angle);
          }
      }
      expect(maxRelativeError(t.read(), want, 1e-2)).toBeLessThan(TOL[dtype]);
      device.rope(t, cosT, sinT, seqLen, heads, headDim, true);
      expect(maxRelativeError(t.read(), x, 1e-2)).toBeLessThan(dtype === 'float32' ? 1e-5 : 3e-2);
    });
  }

  it('far positions of the scaled table: seqLen 8200 on one head', () => {
    const longSeq = 8200;
    const x = randomIn('float32', longSeq * headDim, 10);
    const t = device.tensor(x, [longSeq, headDim], 'float32');
    device.rope(t, cosT, sinT, longSeq, 1, headDim);
    const got = t.read();
    const half = headDim / 2;
    for (const pos of [0, 1, 4097, 8199]) {
      for (let i = 0; i < half; i++) {
        const a = pos * headDim + i;
        const angle = pos * invFreq[i]!;
        const c = Math.fround(Math.cos(angle));
        const s = Math.fround(Math.sin(angle));
        expect(got[a]).toBeCloseTo(x[a]! * c - x[a + half]! * s, 5);
        expect(got[a + half]).toBeCloseTo(x[a + half]! * c + x[a]! * s, 5);
      }
    }
  });
});

interface AttentionCase {
  name: string;
  batch: number;
  seqLen: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  causal: boolean;
  lengths: number[] | null;
  scale?: number;
}

const ATTENTION_CASES: AttentionCase[] = [
  {
    name: 'MHA 4/4, causal',
    batch: 2,
    seqLen: 7,
    heads: 4,
    kvHeads: 4,
    headDim: 16,
    causal: true,
    lengths: null,
  },
  {
    name: 'GQA 4/2, causal',
    batch: 2,
    seqLen: 9,
    heads: 4,
    kvHeads: 2,
    headDim: 8,
    causal: true,
    lengths: null,
  },
  {
    name: 'MQA 4/1, causal + padding lengths',
    batch: 3,
    seqLen: 8,
    heads: 4,
    kvHeads: 1,
    headDim: 12,
    causal: true,
    lengths: [8, 5, 1],
  },
  {
    name: 'GQA 4/2, not causal, padding, scale 0.3',
    batch: 2,
    seqLen: 6,
    heads: 4,
    kvHeads: 2,
    headDim: 8,
    causal: false,
    lengths: [3, 6],
    scale: 0.3,
  },
];

/** Indices of q-like ([N, heads * d]) and kv-like ([N, kvHeads * d]) elements. */
function indexer(c: AttentionCase) {
  return {
    q: (b: number, s: number, h: number, i: number) => ((b * c.seqLen + s) * c.heads + h) * c.headDim + i,
    kv: (b: number, s: number, h: number, i: number) => ((b * c.seqLen + s) * c.kvHeads + h) * c.headDim + i,
    visible: (b: number, s: number, j: number) =>
      j < (c.lengths ? c.lengths[b]! : c.seqLen) && (!c.causal || j <= s),
    scale: c.scale ?? 1 / Math.sqrt(c.headDim),
    group: c.heads / c.kvHeads,
  };
}

/** Softmax attention with the full probability matrix of each (batch, head), float64. */
function jsAttention(c: AttentionCase, q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>) {
  const ix = indexer(c);
  const out = new Float64Array(q.length);
  const lse = new Float64Array(c.batch * c.heads * c.seqLen);
  const probs: Float64Array[] = []; // [b][h] -> [seqLen, seqLen]
  for (let b = 0; b < c.batch; b++)
    for (let h = 0; h < c.heads; h++) {
      const kvh = Math.floor(h / ix.group);
      const P = new Float64Array(c.seqLen * c.seqLen);
      for (let s = 0; s < c.seqLen; s++) {
        const scores: number[] = [];
        for (let j = 0; j < c.seqLen; j++) {
          let dot = 0;
          for (let i = 0; i < c.headDim; i++) dot += q[ix.q(b, s, h, i)]! * k[ix.kv(b, j, kvh, i)]!;
          scores.push(ix.visible(b, s, j) ? dot * ix.scale : Number.NEGATIVE_INFINITY);
        }
        const m = Math.max(...scores);
        const total = scores.reduce(
          (acc, x) => acc + (x === Number.NEGATIVE_INFINITY ? 0 : Math.exp(x - m)),
          0,
        );
        lse[(b * c.heads + h) * c.seqLen + s] = total > 0 ? m + Math.log(total) : 0;
        for (let j = 0; j < c.seqLen; j++)
          P[s * c.seqLen + j] =
            total > 0 && scores[j]! > Number.NEGATIVE_INFINITY ? Math.exp(scores[j]! - m) / total : 0;
        for (let i = 0; i < c.headDim; i++) {
          let acc = 0;
          for (let j = 0; j < c.seqLen; j++) acc += P[s * c.seqLen + j]! * v[ix.kv(b, j, kvh, i)]!;
          out[ix.q(b, s, h, i)] = acc;
        }
      }
      probs.push(P);
    }
  return { out, lse, probs };
}

/** The textbook backward of softmax attention through the full P of each head, float64. */
function jsAttentionBackward(
  c: AttentionCase,
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  dOut: ArrayLike<number>,
) {
  const ix = indexer(c);
  const { probs } = jsAttention(c, q, k, v);
  const dq = new Float64Array(q.length);
  const dk = new Float64Array(k.length);
  const dv = new Float64Array(v.length);
  for (let b = 0; b < c.batch; b++)
    for (let h = 0; h < c.heads; h++) {
      const kvh = Math.floor(h / ix.group);
      const P = probs[b * c.heads + h]!;
      for (let s = 0; s < c.seqLen; s++) {
        // dP[s, j] = dOut[s] . v[j]; softmax backward: dS = P * (dP - sum_j P dP), times the scale.
        const dP: number[] = [];
        for (let j = 0; j < c.seqLen; j++) {
          let dot = 0;
          for (let i = 0; i < c.headDim; i++) dot += dOut[ix.q(b, s, h, i)]! * v[ix.kv(b, j, kvh, i)]!;
          dP.push(dot);
        }
        const rowDot = dP.reduce((acc, x, j) => acc + x * P[s * c.seqLen + j]!, 0);
        for (let j = 0; j < c.seqLen; j++) {
          const p = P[s * c.seqLen + j]!;
          const dS = p * (dP[j]! - rowDot) * ix.scale;
          for (let i = 0; i < c.headDim; i++) {
            dq[ix.q(b, s, h, i)]! += dS * k[ix.kv(b, j, kvh, i)]!;
            dk[ix.kv(b, j, kvh, i)]! += dS * q[ix.q(b, s, h, i)]!;
            dv[ix.kv(b, j, kvh, i)]! += p * dOut[ix.q(b, s, h, i)]!;
          }
        }
      }
    }
  return { dq, dk, dv };
}

function attentionInputs(c: AttentionCase, dtype: Act, seed: number) {
  const tokens = c.batch * c.seqLen;
  return {
    q: randomIn(dtype, tokens * c.heads * c.headDim, seed, 1.5),
    k: randomIn(dtype, tokens * c.kvHeads * c.headDim, seed + 1, 1.5),
    v: randomIn(dtype, tokens * c.kvHeads * c.headDim, seed + 2),
    dOut: randomIn(dtype, tokens * c.heads * c.headDim, seed + 3),
  };
}

function runAttention(c: AttentionCase, dtype: Act, host: ReturnType<typeof attentionInputs>) {
  const tokens = c.batch * c.seqLen;
  const dims: AttentionDims = {
    batch: c.batch,
    seqLen: c.seqLen,
    heads: c.heads,
    kvHeads: c.kvHeads,
    headDim: c.headDim,
    causal: c.causal,
    lengths: c.lengths ? ints(c.lengths) : null,
    ...(c.scale !== undefined ? { scale: c.scale } : {}),
  };
  const t = {
    q: device.tensor(host.q, [tokens, c.heads * c.headDim], dtype),
    k: device.tensor(host.k, [tokens, c.kvHeads * c.headDim], dtype),
    v: device.tensor(host.v, [tokens, c.kvHeads * c.headDim], dtype),
    dOut: device.tensor(host.dOut, [tokens, c.heads * c.headDim], dtype),
    out: device.empty([tokens, c.heads * c.headDim], dtype).fill(Number.NaN),
    lse: device.empty([c.batch, c.heads, c.seqLen], 'float32').fill(Number.NaN),
  };
  device.attention(t.q, t.k, t.v, t.out, t.lse, dims);
  return { t, dims };
}

describe('attention (causal GQA, padding) against full-matrix softmax attention', () => {
  for (const c of ATTENTION_CASES)
    for (const dtype of ACTS) {
      it(`${c.name}, ${dtype}: out and lse`, () => {
        const host = attentionInputs(c, dtype, 20);
        const { t } = runAttention(c, dtype, host);
        const want = jsAttention(c, host.q, host.k, host.v);
        expect(maxRelativeError(t.out.read(), want.out, 5e-2)).toBeLessThan(TOL[dtype]);
        expect(maxRelativeError(t.lse.read(), want.lse, 1e-2)).toBeLessThan(
          dtype === 'float32' ? 1e-5 : 1e-4,
        );
      });
    }

  it('a row with no real token (length 0) gives out 0 and lse 0, and no NaN anywhere', () => {
    const c: AttentionCase = { ...ATTENTION_CASES[2]!, lengths: [4, 0, 8] };
    const { t } = runAttention(c, 'float32', attentionInputs(c, 'float32', 30));
    const out = t.out.read();
    expect(out.every(Number.isFinite)).toBe(true);
    const rowSize = c.seqLen * c.heads * c.headDim;
    expect(out.subarray(rowSize, 2 * rowSize).every((x) => x === 0)).toBe(true);
    expect(t.lse.read().every(Number.isFinite)).toBe(true);
  });

  it('the JS reference itself: uniform keys give the mean of the visible values', () => {
    const c: AttentionCase = { ...ATTENTION_CASES[0]!, batch: 1, heads: 1, kvHeads: 1 };
    const n = c.seqLen * c.headDim;
    const v = randomArray(n, 40);
    const { out } = jsAttention(c, new Float32Array(n), new Float32Array(n), v);
    for (let s = 0; s < c.seqLen; s++) {
      let mean = 0;
      for (let j = 0; j <= s; j++) mean += v[j * c.headDim]! / (s + 1);
      expect(out[s * c.headDim]).toBeCloseTo(mean, 12);
    }
  });
});

describe('attentionBackward against the textbook backward (itself checked by finite differences)', () => {
  it('the JS backward matches central differences of the JS forward (GQA 4/2 with padding)', () => {
    const c: AttentionCase = {
      name: 'fd',
      batch: 2,
      seqLen: 5,
      heads: 4,
      kvHeads: 2,
      headDim: 4,
      causal: true,
      lengths: [5, 3],
    };
    const host = attentionInputs(c, 'float32', 50);
    const q = Float64Array.from(host.q);
    const k = Float64Array.from(host.k);
    const v = Float64Array.from(host.v);
    const loss = () => jsAttention(c, q, k, v).out.reduce((acc, o, i) => acc + o * host.dOut[i]!, 0);
    const grads = jsAttentionBackward(c, q, k, v, host.dOut);
    const h = 1e-6;
    for (const [name, x, g] of [
      ['q', q, grads.dq],
      ['k', k, grads.dk],
      ['v', v, grads.dv],
    ] as const) {
      for (let i = 0; i < x.length; i += 3) {
        const keep = x[i]!;
        x[i] = keep + h;
        const up = loss();
        x[i] = keep - h;
        const down = loss();
        x[i] = keep;
        expect(Math.abs((up - down) / (2 * h) - g[i]!), `${name}[${i}]`).toBeLessThan(1e-6);
      }
    }
  });

  for (const c of ATTENTION_CASES)
    for (const dtype of ACTS) {
      it(`${c.name}, ${dtype}: dq, dk, dv (dk and dv summed over each group's query heads)`, () => {
        const host = attentionInputs(c, dtype, 60);
        const { t, dims } = runAttention(c, dtype, host);
        const grads = {
          dq: device.empty(t.q.shape, dtype).fill(Number.NaN),
          dk: device.empty(t.k.shape, dtype).fill(Number.NaN),
          dv: device.empty(t.v.shape, dtype).fill(Number.NaN),
        };
        const before = device.memory().byKind.workspace;
        device.attentionBackward(t.q, t.k, t.v, t.out, t.dOut, t.lse, grads.dq, grads.dk, grads.dv, dims);
        expect(device.memory().byKind.workspace).toBe(before);
        const want = jsAttentionBackward(c, host.q, host.k, host.v, host.dOut);
        // bf16: out and dOut are rounded, so D = rowsum(dOut * out) carries their rounding: a looser bound.
        const tol = dtype === 'float32' ? 1e-4 : 5e-2;
        expect(maxRelativeError(grads.dq.read(), want.dq, 0.1)).toBeLessThan(tol);
        expect(maxRelativeError(grads.dk.read(), want.dk, 0.1)).toBeLessThan(tol);
        expect(maxRelativeError(grads.dv.read(), want.dv, 0.1)).toBeLessThan(tol);
      });
    }
});

describe('SwiGLU, residual add, biases', () => {
  const n = 300;
  const silu = (x: number) => x / (1 + Math.exp(-x));
  for (const dtype of ACTS) {
    it(`${dtype}: swiglu on the fused [gate | up] rows and its backward (checked by central differences)`, () => {
      const [rows, inter] = [10, n / 10];
      const gate = randomIn(dtype, n, 70, 6);
      const up = randomIn(dtype, n, 71, 2);
      const dOut = randomIn(dtype, n, 72);
      // gateUp [rows, 2 inter]: each row's gate, then its up.
      const gateUp = new Float32Array(2 * n);
      for (let r = 0; r < rows; r++) {
        gateUp.set(gate.subarray(r * inter, (r + 1) * inter), r * 2 * inter);
        gateUp.set(up.subarray(r * inter, (r + 1) * inter), r * 2 * inter + inter);
      }
      const gu = device.tensor(gateUp, [rows, 2 * inter], dtype);
      const d = device.tensor(dOut, [rows, inter], dtype);
      const out = device.empty([rows, inter], dtype);
      device.swiglu(gu, out);
      expect(
        maxRelativeError(
          out.read(),
          Array.from(gate, (x, i) => silu(x) * up[i]!),
          1e-2,
        ),
      ).toBeLessThan(TOL[dtype]);
      const dGateUp = device.empty([rows, 2 * inter], dtype);
      device.swigluBackward(gu, d, dGateUp);
      const got = dGateUp.read();
      const dGate = new Float32Array(n);
      const dUp = new Float32Array(n);
      for (let r = 0; r < rows; r++) {
        dGate.set(got.subarray(r * 2 * inter, r * 2 * inter + inter), r * inter);
        dUp.set(got.subarray(r * 2 * inter + inter, (r + 1) * 2 * inter), r * inter);
      }
      const h = 1e-5;
      const fdGate = Array.from(gate, (x, i) => ((silu(x + h) - silu(x - h)) / (2 * h)) * up[i]! * dOut[i]!);
      expect(maxRelativeError(dGate, fdGate, 1e-2)).toBeLessThan(dtype === 'float32' ? 1e-4 : TOL[dtype]);
      expect(
        maxRelativeError(
          dUp,
          Array.from(gate, (x, i) => silu(x) * dOut[i]!),
          1e-2,
        ),
      ).toBeLessThan(TOL[dtype]);
      // In place over gateUp: the same bits.
      device.swigluBackward(gu, d, gu);
      expect(gu.read()).toEqual(got);
    });

    it(`${dtype}: addRmsNorm is add then rmsNorm, in one pass (sum may be x)`, () => {
      const [rows, hidden] = [6, 40];
      const xs = randomIn(dtype, rows * hidden, 73, 3);
      const ds = randomIn(dtype, rows * hidden, 74);
      const w = device.tensor(randomIn(dtype, hidden, 75), [hidden], dtype);
      const x = device.tensor(xs, [rows, hidden], dtype);
      const delta = device.tensor(ds, [rows, hidden], dtype);
      const sum = device.empty([rows, hidden], dtype);
      const twoPass = device.empty([rows, hidden], dtype);
      device.add(x, delta, sum);
      const rstd = device.empty([rows], 'float32');
      device.rmsNorm(sum, w, twoPass, rstd, 1e-5);
      const fusedOut = device.empty([rows, hidden], dtype);
      const fusedRstd = device.empty([rows], 'float32');
      device.addRmsNorm(x, delta, x, w, fusedOut, fusedRstd, 1e-5);
      expect(x.read()).toEqual(sum.read());
      expect(fusedOut.read()).toEqual(twoPass.read());
      expect(fusedRstd.read()).toEqual(rstd.read());
    });
  }

  it('add (out aliasing a), addBias and biasBackward', () => {
    const [rows, cols] = [7, 5];
    const a = randomArray(rows * cols, 80);
    const b = randomArray(rows * cols, 81);
    const bias = randomArray(cols, 82);
    const aT = device.tensor(a, [rows, cols], 'float32');
    device.add(aT, device.tensor(b, [rows, cols], 'float32'), aT);
    expect(Array.from(aT.read())).toEqual(Array.from(a, (x, i) => Math.fround(x + b[i]!)));
    const x = device.tensor(a, [rows, cols], 'bfloat16');
    device.addBias(x, device.tensor(bias, [cols], 'float32'));
    const xa = Array.from(a, roundToBfloat16);
    expect(Array.from(x.read())).toEqual(xa.map((v, i) => roundToBfloat16(v + bias[i % cols]!)));
    const dBias = device.tensor(Float32Array.of(1, 2, 3, 4, 5), [cols], 'float32');
    device.biasBackward(device.tensor(b, [rows, cols], 'float32'), dBias);
    const want = [1, 2, 3, 4, 5].map(
      (s, c) => s + b.filter((_, i) => i % cols === c).reduce((p, q) => p + q, 0),
    );
    expect(maxRelativeError(dBias.read(), want, 1e-3)).toBeLessThan(1e-6);
  });
});

describe('crossEntropy, argmaxRows, sum', () => {
  const [rows, vocab] = [6, 37];
  const labelList = [3, -100, 36, 0, -100, 17];

  function jsCrossEntropy(logits: Float32Array) {
    const losses: number[] = [];
    const grads = new Float64Array(logits.length);
    labelList.forEach((label, r) => {
      const row = Array.from(logits.subarray(r * vocab, (r + 1) * vocab));
      const m = Math.max(...row);
      const lse = m + Math.log(row.reduce((acc, x) => acc + Math.exp(x - m), 0));
      losses.push(label < 0 ? 0 : lse - row[label]!);
      row.forEach((x, c) => {
        grads[r * vocab + c] = label < 0 ? 0 : Math.exp(x - lse) - (c === label ? 1 : 0);
      });
    });
    return { losses, grads };
  }

  for (const dtype of ACTS) {
    it(`${dtype} logits: losses with gradScale 0 leave logits untouched; gradScale 0.25 writes the gradient`, () => {
      const logits = randomIn(dtype, rows * vocab, 90, 8);
      const want = jsCrossEntropy(logits);
      const t = device.tensor(logits, [rows, vocab], dtype);
      const labels = ints(labelList);
      const losses = device.empty([rows], 'float32').fill(Number.NaN);
      device.crossEntropy(t, labels, losses, 0);
      expect(maxRelativeError(losses.read(), want.losses, 1e-3)).toBeLessThan(1e-5);
      expect(Array.from(t.read())).toEqual(Array.from(logits));
      device.crossEntropy(t, labels, losses, 0.25);
      expect(maxRelativeError(losses.read(), want.losses, 1e-3)).toBeLessThan(1e-5);
      const grads = Array.from(want.grads, (g) => g * 0.25);
      expect(maxRelativeError(t.read(), grads, 1e-2)).toBeLessThan(TOL[dtype]);
      // Ignored rows are zeroed; every labelled row's gradient sums to ~0.
      expect(
        t
          .read()
          .subarray(vocab, 2 * vocab)
          .every((x) => x === 0),
      ).toBe(true);
    });
  }

  it('a large vocabulary row with large logits stays finite (max subtracted)', () => {
    const v = 128256;
    const logits = randomArray(v, 91, 30).map((x) => x + 1000);
    const t = device.tensor(logits, [1, v], 'float32');
    const losses = device.empty([1], 'float32');
    device.crossEntropy(t, ints([5]), losses, 1);
    const m = logits.reduce((a, b) => Math.max(a, b), Number.NEGATIVE_INFINITY);
    let total = 0;
    for (const x of logits) total += Math.exp(x - m);
    expect(losses.read()[0]).toBeCloseTo(m + Math.log(total) - logits[5]!, 2);
    expect(Math.abs(device.sum(t))).toBeLessThan(1e-3);
  });

  it('argmaxRows returns the first index of each row maximum', () => {
    const x = device.tensor(Float32Array.of(1, 5, 5, 2, -3, -1, -1, -2, 0, 0, 0, 0), [3, 4], 'bfloat16');
    const out = device.empty([3], 'int32');
    device.argmaxRows(x, out);
    expect(Array.from(out.read())).toEqual([1, 1, 0]);
  });

  it('sum accumulates in double', () => {
    const x = randomArray(10_001, 92);
    expect(device.sum(device.tensor(x, [x.length], 'float32'))).toBeCloseTo(
      x.reduce((acc, v) => acc + v, 0),
      9,
    );
    const b = randomIn('bfloat16', 999, 93);
    expect(device.sum(device.tensor(b, [b.length], 'bfloat16'))).toBeCloseTo(
      b.reduce((acc, v) => acc + v, 0),
      9,
    );
  });
});

describe('bad arguments are errors naming the argument', () => {
  const dims = { batch: 1, seqLen: 4, heads: 4, kvHeads: 2, headDim: 8 };
  const q = () => device.zeros([4, 32], 'bfloat16');
  const kv = () => device.zeros([4, 16], 'bfloat16');
  const lse = () => device.zeros([1, 4, 4], 'float32');

  it('attention', () => {
    expect(() => device.attention(q(), kv(), kv(), q(), device.zeros([16], 'bfloat16'), dims)).toThrow(
      'attention: lse must be float32, got bfloat16',
    );
    expect(() => device.attention(q(), q(), kv(), q(), lse(), dims)).toThrow(
      'attention: k has 128 elements, expected 64 (batch * seqLen * kvHeads * headDim)',
    );
    expect(() => device.attention(q(), kv(), device.zeros([4, 16], 'float32'), q(), lse(), dims)).toThrow(
      'attention: v must have the dtype of q (bfloat16), got float32',
    );
    expect(() => device.attention(q(), kv(), kv(), q(), lse(), { ...dims, kvHeads: 3 })).toThrow(
      'attention: heads (4) must be a multiple of kvHeads (3)',
    );
    expect(() =>
      device.attention(q(), kv(), kv(), q(), lse(), { ...dims, heads: 1, kvHeads: 1, headDim: 256 }),
    ).toThrow('attention: headDim must be an integer in [1, 128], got 256');
    expect(() =>
      device.attention(q(), kv(), kv(), q(), lse(), { ...dims, lengths: device.zeros([1], 'float32') }),
    ).toThrow('attention: lengths must be int32, got float32');
    expect(() => device.attention(q(), kv(), kv(), q(), lse(), { ...dims, lengths: ints([1, 2]) })).toThrow(
      'attention: lengths has 2 elements, expected 1 (one per batch row)',
    );
    expect(() => device.attention(q(), kv(), kv(), q(), lse(), dims)).not.toThrow();
    const freed = q();
    freed.free();
    expect(() => device.attention(freed, kv(), kv(), q(), lse(), dims)).toThrow(
      'q was freed; create a new tensor',
    );
  });

  it('attentionBackward', () => {
    expect(() =>
      device.attentionBackward(
        q(),
        kv(),
        kv(),
        q(),
        q(),
        lse(),
        q(),
        kv(),
        device.zeros([4, 8], 'bfloat16'),
        dims,
      ),
    ).toThrow('attentionBackward: dv has 32 elements, expected 64');
    expect(() =>
      device.attentionBackward(
        q(),
        kv(),
        kv(),
        q(),
        device.zeros([4, 32], 'float32'),
        lse(),
        q(),
        kv(),
        kv(),
        dims,
      ),
    ).toThrow('attentionBackward: dOut must have the dtype of q (bfloat16), got float32');
  });

  it('norms, rope, embeddings, cross-entropy', () => {
    const x = device.zeros([3, 8], 'float32');
    expect(() =>
      device.rmsNorm(
        x,
        device.zeros([8], 'float32'),
        device.zeros([3, 8], 'float32'),
        device.zeros([2], 'float32'),
        1e-5,
      ),
    ).toThrow('rmsNorm: rstd has 2 elements, expected 3 (one per row of x)');
    expect(() =>
      device.rmsNorm(
        x,
        device.zeros([5], 'float32'),
        device.zeros([3, 8], 'float32'),
        device.zeros([3], 'float32'),
        1e-5,
      ),
    ).toThrow("rmsNorm: x has 24 elements, not a whole number of rows of 5 (H = weight's size)");
    expect(() =>
      device.rmsNormBackward(
        x,
        x,
        device.zeros([8], 'float32'),
        device.zeros([3], 'float32'),
        x,
        device.zeros([8], 'bfloat16'),
        false,
      ),
    ).toThrow('rmsNormBackward: dWeight must be float32, got bfloat16');
    const table = device.zeros([4, 4], 'float32');
    expect(() => device.rope(device.zeros([6, 8], 'float32'), table, table, 6, 1, 8)).toThrow(
      'rope: the cos/sin tables cover 4 positions, fewer than seqLen 6',
    );
    expect(() =>
      device.rope(device.zeros([6, 8], 'float32'), table, device.zeros([4, 4], 'bfloat16'), 3, 1, 8),
    ).toThrow('rope: sin must be float32, got bfloat16');
    expect(() => device.rope(device.zeros([6, 8], 'float32'), table, table, 4, 1, 8)).toThrow(
      'not a whole number of sequences of seqLen 4',
    );
    expect(() =>
      device.embedding(table, device.zeros([3], 'float32'), device.zeros([3, 4], 'float32')),
    ).toThrow('embedding: ids must be int32, got float32');
    expect(() =>
      device.embeddingBackward(
        device.zeros([2, 4], 'float32'),
        ints([0, 1]),
        device.zeros([4, 4], 'bfloat16'),
      ),
    ).toThrow('embeddingBackward: dTable must be float32, got bfloat16');
    expect(() =>
      device.crossEntropy(
        device.zeros([2, 5], 'float32'),
        device.zeros([2], 'float32'),
        device.zeros([2], 'float32'),
        1,
      ),
    ).toThrow('crossEntropy: labels must be int32, got float32');
    expect(() =>
      device.crossEntropy(device.zeros([2, 5], 'float32'), ints([0, 1]), device.zeros([3], 'float32'), 1),
    ).toThrow('crossEntropy: losses has 3 elements, expected 2 (one per label)');
    expect(() => device.swiglu(x, device.zeros([2, 5], 'float32'))).toThrow(
      'swiglu: gateUp has 24 elements, expected 20 (2 * the rows * intermediate size: gate then up in each row)',
    );
    expect(() => device.argmaxRows(x, device.zeros([3], 'float32'))).toThrow(
      'argmaxRows: out must be int32, got float32',
    );
    expect(() => device.sum(ints([1]))).toThrow('sum: x must be a float tensor');
  });
});
