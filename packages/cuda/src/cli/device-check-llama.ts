/**
 * The Llama kernels in badam-cuda-check: each op on the GPU against the CPU device (the C++
 * references) on the same random inputs, outputs poisoned with NaN first; then timings at Llama 3-8B sizes
 * (attention: batch 2, seq 512, 32 heads, 8 kv heads, head dim 128, bf16; cross-entropy over 128256 logits).
 * Attention in bf16 at head dim 64 or 128 is checked and timed twice: on the tensor-core kernels the CUDA
 * device picks, and on the SIMT kernels BADAM_ATTENTION=simt forces.
 * With --dry-run the CPU device stands in for the GPU and the shapes shrink, so CI runs this path too.
 */
import type { TensorDType } from '../addon.js';
import type { AttentionDims, Device } from '../device.js';
import type { DeviceTensor } from '../device-tensor.js';
import type { Check } from './device-check.js';

/** What device-check.ts lends: the devices, its comparison and timing helpers, and the report's lists. */
export interface LlamaCheckContext {
  gpu: Device;
  cpu: Device;
  quick: boolean;
  /** The dry run: small shapes only (the CPU device runs both sides). */
  tiny: boolean;
  compare(
    gpu: Device,
    cpu: Device,
    kernel: string,
    name: string,
    run: (d: Device) => Record<string, DeviceTensor>,
    thresholds: Record<string, number>,
    floors?: Record<string, number | 'rms'>,
  ): void;
  random(n: number, scale?: number): Float32Array;
  checks: Check[];
  timings: Record<string, number | string>[];
  time(device: Device, reps: number, f: () => void): number;
}

const BF16 = 2 ** -7;
const input = (d: Device, values: Float32Array, dtype: TensorDType) =>
  d.tensor(values, [values.length], dtype);
const poisoned = (d: Device, n: number, dtype: TensorDType) => d.empty([n], dtype).fill(Number.NaN);
const ints = (d: Device, values: Int32Array) => d.tensor(values, [values.length], 'int32');

interface AttentionCase {
  name: string;
  dtype: 'float32' | 'bfloat16';
  dims: Omit<AttentionDims, 'lengths'>;
  lengths: number[] | null;
  /** q, k, v (and dq, dk, dv) as the column blocks of one [N, Q + 2 KV] buffer, as DeviceLlama's step has them. */
  fused?: boolean;
}

/**
 * The attention kernels of the CUDA device: tensor cores with the tiles the device's shared memory allows,
 * the 32-key tiles the 99 KiB cards (sm_86 / sm_89) run (BADAM_ATTENTION=tc32), or SIMT (=simt).
 */
type AttentionPath = 'tensor cores' | 'tensor cores, 32-key tiles' | 'simt';

/** The paths the CUDA device has for a case: the tensor-core kernels exist for bf16 / fp16 at d 64 and 128. */
function attentionPaths(dtype: TensorDType, headDim: number): AttentionPath[] {
  return dtype !== 'float32' && (headDim === 64 || headDim === 128)
    ? ['tensor cores', 'tensor cores, 32-key tiles', 'simt']
    : ['simt'];
}

/** Runs `f` with BADAM_ATTENTION set for `path` (the addon reads it at every call), then restores it. */
function onPath<T>(path: AttentionPath, f: () => T): T {
  const before = process.env.BADAM_ATTENTION;
  if (path === 'simt') process.env.BADAM_ATTENTION = 'simt';
  else if (path === 'tensor cores, 32-key tiles') process.env.BADAM_ATTENTION = 'tc32';
  else delete process.env.BADAM_ATTENTION;
  try {
    return f();
  } finally {
    if (before === undefined) delete process.env.BADAM_ATTENTION;
    else process.env.BADAM_ATTENTION = before;
  }
}

function attentionCases(tiny: boolean): AttentionCase[] {
  const llama8b: AttentionCase = {
    name: 'Llama 3-8B: batch 2, seq 512, 32 / 8 heads, d 128, fused q / k / v rows',
    dtype: 'bfloat16',
    dims: { batch: 2, seqLen: 512, heads: 32, kvHeads: 8, headDim: 128 },
    lengths: null,
    fused: true,
  };
  return [
    {
      // Sequence lengths that are not multiples of the 32-row tiles, and a padded row.
      name: 'batch 2, seq 77, 4 / 2 heads, d 64, lengths [77, 50]',
      dtype: 'float32',
      dims: { batch: 2, seqLen: 77, heads: 4, kvHeads: 2, headDim: 64 },
      lengths: [77, 50],
    },
    {
      name: 'batch 2, seq 45, 4 / 1 heads, d 40, not causal, lengths [45, 1]',
      dtype: 'bfloat16',
      dims: { batch: 2, seqLen: 45, heads: 4, kvHeads: 1, headDim: 40, causal: false },
      lengths: [45, 1],
    },
    {
      // The tensor-core kernels' 64-row tiles, partial, with padding.
      name: 'batch 2, seq 130, 4 / 2 heads, d 64, lengths [130, 70]',
      dtype: 'bfloat16',
      dims: { batch: 2, seqLen: 130, heads: 4, kvHeads: 2, headDim: 64 },
      lengths: [130, 70],
    },
    tiny
      ? {
          name: 'batch 1, seq 64, 8 / 2 heads, d 128, fused q / k / v rows (the 8B case, shrunk for the dry run)',
          dtype: 'bfloat16',
          dims: { batch: 1, seqLen: 64, heads: 8, kvHeads: 2, headDim: 128 },
          lengths: null,
          fused: true,
        }
      : llama8b,
  ];
}

/** q, k, v on `d` (views of one fused buffer for a fused case), with the dims that address them. */
function attentionOperands(
  d: Device,
  c: AttentionCase,
  host: { qkv: Float32Array },
  lengths: Int32Array | null,
) {
  const { batch, seqLen, heads, kvHeads, headDim } = c.dims;
  const [n, Q, KV] = [batch * seqLen, heads * headDim, kvHeads * headDim];
  const W = Q + 2 * KV;
  const dims: AttentionDims = {
    ...c.dims,
    lengths: lengths ? ints(d, lengths) : null,
    ...(c.fused ? { qStride: W, kvStride: W } : {}),
  };
  const blocks = (t: DeviceTensor): [DeviceTensor, DeviceTensor, DeviceTensor] =>
    c.fused
      ? [t.view(0, [(n - 1) * W + Q]), t.view(Q, [(n - 1) * W + KV]), t.view(Q + KV, [(n - 1) * W + KV])]
      : [t.view(0, [n * Q]), t.view(n * Q, [n * KV]), t.view(n * (Q + KV), [n * KV])];
  // Unfused: q, k, v one after another in one buffer (packed rows each).
  const whole = input(d, host.qkv, c.dtype);
  return { qkv: blocks(whole), dims, blocks, whole, size: n * W };
}

function attentionCheck(ctx: LlamaCheckContext, c: AttentionCase, path: AttentionPath): void {
  const { batch, seqLen, heads, kvHeads, headDim } = c.dims;
  const qSize = batch * seqLen * heads * headDim;
  const kvSize = batch * seqLen * kvHeads * headDim;
  const host = { qkv: ctx.random(qSize + 2 * kvSize, 2), dOut: ctx.random(qSize) };
  const lengths = c.lengths ? Int32Array.from(c.lengths) : null;
  const name = `${c.name}, ${c.dtype} [${path}]`;
  // Tensor cores multiply bf16 P and dS (as FlashAttention-2 does): about two bf16 steps of each result,
  // measured against the larger of the element and the output's rms (the emulator's test does the same).
  const tensorCores = path !== 'simt';
  // lse: fp32 sums in another order on each side; out: one bf16 rounding apart at most (SIMT).
  const thresholds =
    c.dtype === 'float32' ? { out: 1e-4, lse: 1e-4 } : { out: tensorCores ? 2 * BF16 : BF16, lse: 1e-4 };
  onPath(path, () =>
    ctx.compare(
      ctx.gpu,
      ctx.cpu,
      'attention',
      name,
      (d) => {
        const { qkv, dims } = attentionOperands(d, c, host, lengths);
        const out = poisoned(d, qSize, c.dtype);
        const lse = poisoned(d, batch * heads * seqLen, 'float32');
        d.attention(...qkv, out, lse, dims);
        return { out, lse };
      },
      thresholds,
      tensorCores ? { out: 'rms' } : {},
    ),
  );
  // Gradients are sums with cancellation: relative to a floor of 1e-2 of their typical size (~1).
  const gradThreshold = c.dtype === 'float32' ? 1e-4 : tensorCores ? 4 * BF16 : 2 * BF16;
  const gradFloor = tensorCores ? 'rms' : 1e-2;
  onPath(path, () =>
    ctx.compare(
      ctx.gpu,
      ctx.cpu,
      'attentionBackward',
      name,
      (d) => {
        const { qkv, dims, blocks, size } = attentionOperands(d, c, host, lengths);
        const out = d.empty([qSize], c.dtype);
        const lse = d.empty([batch * heads * seqLen], 'float32');
        d.attention(...qkv, out, lse, dims);
        const grads = poisoned(d, size, c.dtype); // dq | dk | dv, laid out as q | k | v
        d.attentionBackward(...qkv, out, input(d, host.dOut, c.dtype), lse, ...blocks(grads), dims);
        return { 'dq | dk | dv': grads };
      },
      { 'dq | dk | dv': gradThreshold },
      { 'dq | dk | dv': gradFloor },
    ),
  );
}

/** A comparison of one kernel's outputs on the GPU and the CPU device. */
type Compare = (
  kernel: string,
  name: string,
  run: (d: Device) => Record<string, DeviceTensor>,
  thresholds: Record<string, number>,
  floors?: Record<string, number>,
) => void;

/** The shapes the Llama checks run at: small in the dry run, Llama 3-8B's widths otherwise. */
interface LlamaCheckShapes {
  tokens: number;
  hidden: number;
  vocab: number;
  /** [tokens, hidden] inputs shared by several checks. */
  x: Float32Array;
  w: Float32Array;
  dOut: Float32Array;
}

/** Every Llama kernel, GPU against CPU, on the same inputs. */
export function llamaChecks(ctx: LlamaCheckContext): void {
  const { gpu, cpu, tiny, quick } = ctx;
  const compare: Compare = (kernel, name, run, thresholds, floors) =>
    ctx.compare(gpu, cpu, kernel, name, run, thresholds, floors);
  const [tokens, hidden, vocab] = tiny ? [24, 256, 1000] : quick ? [128, 4096, 32000] : [512, 4096, 32000];
  const shapes: LlamaCheckShapes = {
    tokens,
    hidden,
    vocab,
    x: ctx.random(tokens * hidden, 3),
    w: ctx.random(hidden, 1),
    dOut: ctx.random(tokens * hidden),
  };
  embeddingChecks(ctx, compare, shapes);
  normChecks(compare, shapes);
  ropeChecks(ctx, compare);
  elementwiseChecks(ctx, compare, shapes);
  lossChecks(ctx, compare);
  for (const c of attentionCases(tiny))
    for (const path of attentionPaths(c.dtype, c.dims.headDim)) attentionCheck(ctx, c, path);
  gpu.emptyCache();
  cpu.emptyCache();
}

/** Embedding: a bf16 table into bf16 activations; its backward adds repeated ids into fp32 (atomics on the GPU). */
function embeddingChecks(ctx: LlamaCheckContext, compare: Compare, shapes: LlamaCheckShapes): void {
  const { tokens, hidden, vocab, dOut } = shapes;
  const ids = Int32Array.from({ length: tokens }, (_, i) => (i * 7919) % 97);
  const table = ctx.random(vocab * hidden);
  compare(
    'embedding',
    `bf16 table [${vocab}, ${hidden}], ${tokens} ids`,
    (d) => {
      const out = poisoned(d, tokens * hidden, 'bfloat16');
      d.embedding(input(d, table, 'bfloat16'), ints(d, ids), out);
      return { out };
    },
    { out: 0 },
  );
  compare(
    'embeddingBackward',
    'bf16 dOut, repeated ids, fp32 +=',
    (d) => {
      const dTable = input(d, table, 'float32');
      d.embeddingBackward(input(d, dOut, 'bfloat16'), ints(d, ids), dTable);
      return { dTable };
    },
    { dTable: 1e-5 },
  );
}

/** RMSNorm and its backward, fp32 and bf16. */
function normChecks(compare: Compare, shapes: LlamaCheckShapes): void {
  const { tokens, hidden, x, w, dOut } = shapes;
  for (const dtype of ['float32', 'bfloat16'] as const) {
    compare(
      'rmsNorm',
      `${dtype} [${tokens}, ${hidden}]`,
      (d) => {
        const out = poisoned(d, tokens * hidden, dtype);
        const rstd = poisoned(d, tokens, 'float32');
        d.rmsNorm(input(d, x, dtype), input(d, w, dtype), out, rstd, 1e-5);
        return { out, rstd };
      },
      { out: dtype === 'float32' ? 1e-5 : 2 * BF16, rstd: 1e-5 },
    );
    compare(
      'rmsNormBackward',
      `${dtype} [${tokens}, ${hidden}], dx accumulated, dWeight`,
      (d) => {
        const [xt, wt] = [input(d, x, dtype), input(d, w, dtype)];
        const rstd = d.empty([tokens], 'float32');
        d.rmsNorm(xt, wt, d.empty([tokens * hidden], dtype), rstd, 1e-5);
        const dx = input(d, dOut, dtype);
        const dWeight = d.zeros([hidden], 'float32');
        d.rmsNormBackward(input(d, dOut, dtype), xt, wt, rstd, dx, dWeight, true);
        return { dx, dWeight };
      },
      { dx: dtype === 'float32' ? 1e-4 : 2 * BF16, dWeight: 1e-4 },
      { dx: 1e-2, dWeight: 1e-2 },
    );
  }
}

/** Rope with a table of 4096 positions, forward and inverse. */
function ropeChecks(ctx: LlamaCheckContext, compare: Compare): void {
  const { tiny } = ctx;
  const [seqLen, heads, headDim] = [tiny ? 24 : 128, 8, 128];
  const maxPos = 4096;
  const cos = new Float32Array(maxPos * (headDim / 2));
  const sin = new Float32Array(maxPos * (headDim / 2));
  for (let p = 0; p < maxPos; p++)
    for (let i = 0; i < headDim / 2; i++) {
      const angle = p / 500000 ** ((2 * i) / headDim);
      cos[p * (headDim / 2) + i] = Math.cos(angle);
      sin[p * (headDim / 2) + i] = Math.sin(angle);
    }
  const ropeIn = ctx.random(2 * seqLen * heads * headDim);
  for (const inverse of [false, true]) {
    compare(
      'rope',
      `bf16, 2 x ${seqLen} tokens, ${heads} heads, d ${headDim}, inverse ${inverse}`,
      (d) => {
        const t = input(d, ropeIn, 'bfloat16');
        d.rope(t, input(d, cos, 'float32'), input(d, sin, 'float32'), seqLen, heads, headDim, inverse);
        return { x: t };
      },
      { x: BF16 },
    );
  }
}

/** SwiGLU, the residual add, biases. */
function elementwiseChecks(ctx: LlamaCheckContext, compare: Compare, shapes: LlamaCheckShapes): void {
  const { tokens, hidden, x, w, dOut } = shapes;
  const { tiny } = ctx;
  const inter = tiny ? 688 : 14336;
  const n = tokens * inter;
  const [gateUp, dMlp] = [ctx.random(2 * n, 4), ctx.random(n)];
  compare(
    'swiglu',
    `bf16 [${tokens}, 2 x ${inter}] -> [${tokens}, ${inter}]`,
    (d) => {
      const out = d.empty([tokens, inter], 'bfloat16').fill(Number.NaN);
      d.swiglu(input(d, gateUp, 'bfloat16'), out);
      return { out };
    },
    { out: BF16 },
  );
  compare(
    'swigluBackward',
    `bf16 [${tokens}, 2 x ${inter}], in place over gate | up`,
    (d) => {
      const gu = input(d, gateUp, 'bfloat16');
      d.swigluBackward(gu, d.tensor(dMlp, [tokens, inter], 'bfloat16'), gu);
      return { dGateUp: gu };
    },
    { dGateUp: BF16 },
  );
  compare(
    'addRmsNorm',
    `bf16 [${tokens}, ${hidden}]`,
    (d) => {
      const sum = poisoned(d, tokens * hidden, 'bfloat16');
      const out = poisoned(d, tokens * hidden, 'bfloat16');
      const rstd = poisoned(d, tokens, 'float32');
      d.addRmsNorm(
        input(d, x, 'bfloat16'),
        input(d, dOut, 'bfloat16'),
        sum,
        input(d, w, 'bfloat16'),
        out,
        rstd,
        1e-5,
      );
      return { sum, out, rstd };
    },
    { sum: 0, out: 2 * BF16, rstd: 1e-5 },
  );
  compare(
    'add',
    `bf16 [${tokens}, ${hidden}], out aliasing a`,
    (d) => {
      const a = input(d, x, 'bfloat16');
      d.add(a, input(d, dOut, 'bfloat16'), a);
      return { out: a };
    },
    { out: 0 },
  );
  compare(
    'addBias / biasBackward',
    `bf16 [${tokens}, ${hidden}]`,
    (d) => {
      const t = input(d, x, 'bfloat16');
      d.addBias(t, input(d, w, 'bfloat16'));
      const dBias = input(d, w, 'float32');
      d.biasBackward(input(d, dOut, 'bfloat16'), dBias);
      return { x: t, dBias };
    },
    { x: 0, dBias: 1e-4 },
    { dBias: 1e-2 },
  );
}

/** Cross-entropy over Llama 3's vocabulary, with ignored rows, loss only and with the gradient in place. */
function lossChecks(ctx: LlamaCheckContext, compare: Compare): void {
  const { gpu, cpu, tiny, quick } = ctx;
  const [rows, V] = [tiny ? 4 : quick ? 64 : 256, 128256];
  const logits = ctx.random(rows * V, 8);
  const labels = Int32Array.from({ length: rows }, (_, r) => (r % 5 === 1 ? -100 : (r * 104729) % V));
  for (const dtype of ['float32', 'bfloat16'] as const) {
    compare(
      'crossEntropy',
      `${dtype} [${rows}, ${V}], loss only`,
      (d) => {
        const losses = poisoned(d, rows, 'float32');
        d.crossEntropy(input(d, logits, dtype), ints(d, labels), losses, 0);
        return { losses };
      },
      { losses: 5e-5 },
    );
    compare(
      'crossEntropy',
      `${dtype} [${rows}, ${V}], gradient in place (gradScale 1 / ${rows})`,
      (d) => {
        const l = input(d, logits, dtype);
        const losses = poisoned(d, rows, 'float32');
        d.crossEntropy(l, ints(d, labels), losses, 1 / rows);
        return { losses, dLogits: l };
      },
      { losses: 5e-5, dLogits: dtype === 'float32' ? 1e-4 : BF16 },
      { dLogits: 1e-9 },
    );
  }
  compare(
    'argmaxRows',
    `bf16 [${rows}, ${V}]`,
    (d) => {
      const out = d.empty([rows], 'int32').fill(-1);
      d.argmaxRows(input(d, logits, 'bfloat16'), out);
      return { out };
    },
    { out: 0 },
  );
  const total = { gpu: gpu.sum(input(gpu, logits, 'float32')), cpu: cpu.sum(input(cpu, logits, 'float32')) };
  const sumError = Math.abs(total.gpu - total.cpu) / Math.max(Math.abs(total.cpu), 1);
  ctx.checks.push({
    kernel: 'sum',
    case: `float32, ${rows * V} elements`,
    maxRelError: sumError,
    threshold: 1e-10,
    ok: sumError <= 1e-10,
  });
}

/** Timings of the kernels that matter at Llama 3-8B sizes. */
export function llamaTimings(ctx: LlamaCheckContext): void {
  const { gpu, tiny } = ctx;
  const [batch, seqLen, heads, kvHeads, headDim] = tiny ? [1, 64, 8, 2, 128] : [2, 512, 32, 8, 128];
  const dims: AttentionDims = { batch, seqLen, heads, kvHeads, headDim };
  const q = gpu.empty([batch * seqLen * heads * headDim], 'bfloat16').fill(0.1);
  const kv = gpu.empty([batch * seqLen * kvHeads * headDim], 'bfloat16').fill(0.1);
  const out = gpu.empty(q.shape, 'bfloat16');
  const dq = gpu.empty(q.shape, 'bfloat16');
  const [dk, dv] = [gpu.empty(kv.shape, 'bfloat16'), gpu.empty(kv.shape, 'bfloat16')];
  const lse = gpu.empty([batch * heads * seqLen], 'float32');
  const reps = tiny ? 1 : 20;
  // Causal: half of the t x t scores; 2 GEMM-like products forward (QK, PV), 5 backward (QK, dP, dq, dk, dv).
  const pairs = (batch * heads * seqLen * (seqLen + 1)) / 2;
  for (const path of attentionPaths('bfloat16', headDim)) {
    const forward = onPath(path, () => ctx.time(gpu, reps, () => gpu.attention(q, kv, kv, out, lse, dims)));
    const backward = onPath(path, () =>
      ctx.time(gpu, reps, () => gpu.attentionBackward(q, kv, kv, out, q, lse, dq, dk, dv, dims)),
    );
    const size = `batch ${batch}, seq ${seqLen}, ${heads} / ${kvHeads} heads, d ${headDim}, bf16, causal`;
    timings(ctx, `attention forward [${path}]`, size, forward, (4 * pairs * headDim) / forward / 1e12);
    timings(ctx, `attention backward [${path}]`, size, backward, (10 * pairs * headDim) / backward / 1e12);
  }
  for (const t of [q, kv, out, dq, dk, dv, lse]) t.free();

  const [rows, V] = [tiny ? 4 : 2048, 128256];
  const logits = gpu.empty([rows * V], 'bfloat16').fill(0.5);
  const labels = gpu.tensor(
    Int32Array.from({ length: rows }, (_, r) => r % V),
    [rows],
    'int32',
  );
  const losses = gpu.empty([rows], 'float32');
  const ce = ctx.time(gpu, tiny ? 1 : 10, () => gpu.crossEntropy(logits, labels, losses, 1e-3));
  ctx.timings.push({
    what: 'crossEntropy with gradient in place',
    size: `${rows} x ${V} bf16`,
    ms: (ce * 1e3).toFixed(3),
    // Two reads and one write of the row.
    'GB/s': ((3 * 2 * rows * V) / ce / 1e9).toFixed(0),
  });
  for (const t of [logits, labels, losses]) t.free();
  gpu.emptyCache();
}

function timings(ctx: LlamaCheckContext, what: string, size: string, seconds: number, tflops: number): void {
  ctx.timings.push({ what, size, ms: (seconds * 1e3).toFixed(3), 'TFLOP/s': tflops.toFixed(1) });
}
