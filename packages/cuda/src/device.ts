import { BadamOptionError, numel } from '@badam/core';
import {
  type AdamWStepArgs,
  type AllocationKind,
  type AllocatorStats,
  type CudaAddon,
  CudaUnavailableError,
  cudaBuildNote,
  type DeviceDescription,
  type Handle,
  loadAddon,
  type SparseAdamStepArgs,
  type TensorDType,
} from './addon.js';
import { DeviceTensor } from './device-tensor.js';

/** Shapes of a matrix product C[m, n] = alpha op(A)[m, k] op(B)[k, n] + beta C (row-major). */
export interface GemmShape {
  m: number;
  n: number;
  k: number;
  /** A is stored [k, m]. */
  transA?: boolean;
  /** B is stored [n, k]. */
  transB?: boolean;
  /** Default 1. */
  alpha?: number;
  /** Default 0 (C is overwritten). */
  beta?: number;
  /**
   * Leading dimensions: elements between consecutive rows of A, B and C as stored (default: packed). A longer
   * one reads (or writes) a column block of a wider row-major matrix; the tensor then spans the rows, e.g. a
   * view starting at the block's first column.
   */
  lda?: number;
  ldb?: number;
  ldc?: number;
}

/**
 * Shapes of one attention call. q / out are [batch * seqLen, heads * headDim] and k / v
 * [batch * seqLen, kvHeads * headDim], row-major with token n = b * seqLen + s (the GEMMs' layout: no
 * transposes). Query head h reads kv head `h / (heads / kvHeads)` (grouped-query attention).
 */
export interface AttentionDims {
  batch: number;
  seqLen: number;
  heads: number;
  /** Divides `heads`; equal to it for multi-head attention. */
  kvHeads: number;
  /** At most 128. */
  headDim: number;
  /**
   * Elements between consecutive tokens of q and dq (default heads * headDim), and of k, v, dk, dv (default
   * kvHeads * headDim): q, k, v as column blocks of one fused [N, Q + 2 KV] projection, each a view starting at
   * its block. out and dOut are packed.
   */
  qStride?: number;
  kvStride?: number;
  /** Multiplies q.k; default 1 / sqrt(headDim). */
  scale?: number;
  /** Key j is masked for query s when j > s; default true (Llama). */
  causal?: boolean;
  /**
   * int32 [batch]: real tokens per row; keys j >= lengths[b] are masked (right padding). Values outside
   * [0, seqLen] are clamped. Null: none.
   */
  lengths?: DeviceTensor | null;
}

/** Whether CUDA can be used here, and if not, why. */
export interface CudaStatus {
  /** The addon was built with nvcc. */
  readonly compiled: boolean;
  /** CUDA devices found (0 when none or unusable). */
  readonly devices: number;
  /** What is missing, when `devices` is 0. */
  readonly reason?: string;
}

let nextContextId = 1;

/**
 * Which instructions the CPU engine's kernels use: `auto` (the best this CPU has), or a lower level to compare
 * or test with: `avx512-bf16` (bf16 GEMMs multiply bf16 pairs with vdpbf16ps), `avx512`, `avx2` (the fp32
 * GEMM micro-kernel; the other kernels portable), `generic` (portable C++ throughout).
 */
export type CpuInstructionSet = 'auto' | 'avx512-bf16' | 'avx512' | 'avx2' | 'generic';

/** Options of {@link Device.cpuEngine}. */
export interface CpuEngineOptions {
  /** Default `auto`. A level this CPU does not have is an error that names the levels it has. */
  instructionSet?: CpuInstructionSet;
}

/**
 * A device with its caching allocator: the CUDA device (a GPU, kernels in CUDA, GEMMs in cuBLAS), the CPU
 * reference device (host memory, the C++ reference kernels, GEMMs by @badam/native's SGEMM) or the CPU engine
 * (host memory, tiled multithreaded AVX-512 / AVX512_BF16 kernels). All run the same kernels with the same
 * arguments, so code written against one runs on the others, and the reference device is the oracle the GPU
 * and the engine are checked against.
 *
 * @example
 * ```ts
 * const device = Device.cpu(); // or Device.cuda()
 * const a = device.tensor(Float32Array.of(1, 2, 3, 4), [2, 2], 'bfloat16');
 * const c = device.zeros([2, 2], 'float32');
 * device.gemm(a, a, c, { m: 2, n: 2, k: 2 });
 * c.read(); // Float32Array [7, 10, 15, 22]
 * ```
 */
export class Device {
  private readonly addon: CudaAddon;
  private readonly ctx: Handle;
  private readonly id = nextContextId++;
  /** What the device is: kind, name, compute capability, memory, GEMM library. */
  readonly description: DeviceDescription;

  private constructor(kind: 'cuda' | 'cpu' | 'cpu-engine', ordinal: number, instructionSet = 'auto') {
    this.addon = loadAddon();
    this.ctx = this.addon.createContext(kind, ordinal, instructionSet);
    this.description = this.addon.contextInfo(this.ctx);
  }

  /**
   * The GPU `ordinal`. Throws {@link CudaUnavailableError} saying what is missing — a CUDA build of the
   * addon, a driver and GPU, cuBLAS — when it cannot be used.
   */
  static cuda(ordinal = 0): Device {
    const status = Device.cudaStatus();
    if (status.devices === 0)
      throw new CudaUnavailableError(`@badam/cuda cannot use a GPU here: ${status.reason}`);
    try {
      return new Device('cuda', ordinal);
    } catch (error) {
      throw new CudaUnavailableError(`@badam/cuda cannot use GPU ${ordinal}: ${(error as Error).message}`);
    }
  }

  /**
   * The CPU device: host memory and the reference kernels, with GEMMs by @badam/native's blocked,
   * multithreaded SGEMM (`BADAM_CPU_GEMM=reference`, read when the device is created: the reference loop).
   * Works wherever the addon is built.
   */
  static cpu(): Device {
    return new Device('cpu', 0);
  }

  /**
   * The CPU engine: the fast way to train on a CPU. Host memory like {@link Device.cpu}, but every op is a
   * tiled, multithreaded kernel on one thread pool (`BADAM_THREADS` threads, default all), vectorised with
   * AVX-512 where the CPU has it; bf16 GEMMs multiply bf16 pairs with `vdpbf16ps` (AVX512_BF16, fp32
   * accumulation) and widen to fp32 elsewhere; attention is flash style (no [seq, seq] matrix). Its results
   * agree with the reference device's within fp32 rounding (the tests check every op against it).
   *
   * @example
   * ```ts
   * const device = Device.cpuEngine();
   * device.description.name; // 'CPU engine avx512-bf16' on a CPU with AVX512_BF16
   * ```
   */
  static cpuEngine(options: CpuEngineOptions = {}): Device {
    const instructionSet = options.instructionSet ?? 'auto';
    if (!['auto', 'avx512-bf16', 'avx512', 'avx2', 'generic'].includes(instructionSet))
      throw new BadamOptionError(
        'instructionSet',
        instructionSet,
        "'auto', 'avx512-bf16', 'avx512', 'avx2' or 'generic'",
      );
    try {
      return new Device('cpu-engine', 0, instructionSet);
    } catch (error) {
      const message = (error as Error).message;
      if (!message.startsWith('instruction set')) throw error;
      throw new BadamOptionError('instructionSet', instructionSet, 'a level this CPU runs', message);
    }
  }

  /** Whether the CUDA device can be created here, and why not. */
  static cudaStatus(): CudaStatus {
    const info = loadAddon().buildInfo();
    if (!info.cudaCompiled)
      return { compiled: false, devices: 0, reason: cudaBuildNote() ?? info.cudaUnavailableReason };
    return info.cudaDevices > 0
      ? { compiled: true, devices: info.cudaDevices }
      : { compiled: true, devices: 0, reason: info.cudaUnavailableReason };
  }

  /** An uninitialised tensor of `shape` (fill it or write it before reading). */
  empty(shape: readonly number[], dtype: TensorDType, kind: AllocationKind = 'other'): DeviceTensor {
    for (const d of shape) {
      if (!Number.isSafeInteger(d) || d < 1)
        throw new BadamOptionError('shape', `[${shape.join(', ')}]`, 'positive integer dimensions');
    }
    const handle = this.addon.tensorCreate(this.ctx, dtype, numel(shape), kind);
    return new DeviceTensor(this.addon, handle, dtype, [...shape], kind, this.id);
  }

  /** A tensor of zeros. */
  zeros(shape: readonly number[], dtype: TensorDType, kind: AllocationKind = 'other'): DeviceTensor {
    return this.empty(shape, dtype, kind).fill(0);
  }

  /** A tensor holding `values` (rounded to `dtype`; or raw bits, see {@link DeviceTensor.write}). */
  tensor(
    values: Float32Array | Uint16Array | Int32Array | Uint8Array,
    shape: readonly number[],
    dtype: TensorDType,
    kind: AllocationKind = 'other',
  ): DeviceTensor {
    const t = this.empty(shape, dtype, kind);
    try {
      return t.write(values);
    } catch (error) {
      t.free();
      throw error;
    }
  }

  /** `dst` = the values of `src` (same dtype and size). */
  copy(dst: DeviceTensor, src: DeviceTensor): void {
    this.own(dst, src);
    this.addon.tensorCopy(dst.handle, src.handle);
  }

  /** A new tensor with `src`'s values converted to `dtype` (round to nearest even). */
  castTo(src: DeviceTensor, dtype: TensorDType, kind: AllocationKind = src.kind): DeviceTensor {
    const dst = this.empty(src.shape, dtype, kind);
    this.cast(src, dst);
    return dst;
  }

  /** `dst` = `src` converted to `dst`'s dtype. */
  cast(src: DeviceTensor, dst: DeviceTensor): void {
    this.own(src, dst);
    this.addon.cast(src.handle, dst.handle);
  }

  /**
   * Matrix product with fp32 accumulation (cuBLAS on the GPU, @badam/native's SGEMM on the CPU); A and B
   * share a dtype, C is fp32 or that dtype.
   */
  gemm(a: DeviceTensor, b: DeviceTensor, c: DeviceTensor, shape: GemmShape): void {
    this.own(a, b, c);
    this.addon.gemm(
      a.handle,
      b.handle,
      c.handle,
      shape.m,
      shape.n,
      shape.k,
      shape.transA ?? false,
      shape.transB ?? false,
      shape.alpha ?? 1,
      shape.beta ?? 0,
      shape.lda ?? 0,
      shape.ldb ?? 0,
      shape.ldc ?? 0,
    );
  }

  /**
   * One fused AdamW step (torch.optim.AdamW): updates `exp_avg`, `exp_avg_sq` and the fp32 `master`, and
   * writes the weight rounded to its dtype in the same pass. `master` is null for fp32 weights.
   */
  adamw(
    master: DeviceTensor | null,
    weight: DeviceTensor,
    grad: DeviceTensor,
    expAvg: DeviceTensor,
    expAvgSq: DeviceTensor,
    args: AdamWStepArgs,
  ): void {
    this.own(weight, grad, expAvg, expAvgSq, ...(master ? [master] : []));
    this.addon.adamw(
      master?.handle ?? null,
      weight.handle,
      grad.handle,
      expAvg.handle,
      expAvgSq.handle,
      args,
    );
  }

  /** Sum of squares of all elements of `tensors` (accumulated in double). */
  sumSquares(tensors: readonly DeviceTensor[]): number {
    this.own(...tensors);
    return this.addon.sumSquares(tensors.map((t) => t.handle));
  }

  /** The L2 norm of `tensors` taken as one vector. */
  globalNorm(tensors: readonly DeviceTensor[]): number {
    return Math.sqrt(this.sumSquares(tensors));
  }

  /** `x *= factor` in place. */
  scale(x: DeviceTensor, factor: number): void {
    this.own(x);
    this.addon.scale(x.handle, factor);
  }

  /** `dst += src * factor` in fp32, dst rounded to its dtype (fp32, bf16 or fp16): gradient accumulation. */
  accumulate(dst: DeviceTensor, src: DeviceTensor, factor = 1): void {
    this.own(dst, src);
    this.addon.accumulate(dst.handle, src.handle, factor);
  }

  /**
   * BlockOptimizerRatio's masked Adam update on the entries `indices` (int32) of the fp32 `param`, with
   * compact moments (one per index); `weight`, when given, receives the rounded new values.
   */
  sparseAdam(
    param: DeviceTensor,
    weight: DeviceTensor | null,
    grad: DeviceTensor,
    indices: DeviceTensor,
    expAvg: DeviceTensor,
    expAvgSq: DeviceTensor,
    args: SparseAdamStepArgs,
  ): void {
    this.own(param, grad, indices, expAvg, expAvgSq, ...(weight ? [weight] : []));
    this.addon.sparseAdam(
      param.handle,
      weight?.handle ?? null,
      grad.handle,
      indices.handle,
      expAvg.handle,
      expAvgSq.handle,
      args,
    );
  }

  // --- Llama ops. Activations ("act") are float32, bfloat16 or float16; compute is fp32. ---

  /**
   * Embedding lookup: `out[n] = table[ids[n]]` for table [V, H] (any float dtype), ids int32 [N], out [N, H]
   * (converted to out's dtype). Ids are the caller's to validate (0 <= id < V): an id outside gives a zero
   * row, never a read out of range.
   *
   * @example
   * ```ts
   * const table = device.tensor(Float32Array.of(1, 2, 3, 4, 5, 6), [3, 2], 'bfloat16');
   * const out = device.empty([2, 2], 'float32');
   * device.embedding(table, device.tensor(Int32Array.of(2, 0), [2], 'int32'), out);
   * out.read(); // Float32Array [5, 6, 1, 2]
   * ```
   */
  embedding(table: DeviceTensor, ids: DeviceTensor, out: DeviceTensor): void {
    this.own(table, ids, out);
    this.addon.embedding(table.handle, ids.handle, out.handle);
  }

  /**
   * The embedding's gradient: `dTable[ids[n]] += dOut[n]` (dTable fp32 [V, H], accumulated; ids outside
   * [0, V) skipped). The GPU adds with atomics, so repeated ids sum in no fixed order.
   */
  embeddingBackward(dOut: DeviceTensor, ids: DeviceTensor, dTable: DeviceTensor): void {
    this.own(dOut, ids, dTable);
    this.addon.embeddingBackward(dOut.handle, ids.handle, dTable.handle);
  }

  /**
   * HF LlamaRMSNorm over rows of H = weight's size: `rstd[n] = 1 / sqrt(mean(x[n]^2) + eps)` (fp32 [N],
   * overwritten, kept for the backward) and `out = weight * round_to_x_dtype(x * rstd)`.
   *
   * @example
   * ```ts
   * const x = device.tensor(Float32Array.of(3, 4), [1, 2], 'float32');
   * const out = device.empty([1, 2], 'float32');
   * const rstd = device.empty([1], 'float32');
   * device.rmsNorm(x, device.tensor(Float32Array.of(1, 2), [2], 'float32'), out, rstd, 0);
   * out.read(); // ≈ [0.8485, 2.2627]
   * ```
   */
  rmsNorm(x: DeviceTensor, weight: DeviceTensor, out: DeviceTensor, rstd: DeviceTensor, eps: number): void {
    this.own(x, weight, out, rstd);
    this.addon.rmsNorm(x.handle, weight.handle, out.handle, rstd.handle, eps);
  }

  /**
   * The residual add fused with the next RMSNorm: `sum = x + delta` (rounded to their dtype; `sum` may be `x`)
   * and `out = rmsNorm(sum)` with `rstd`, one pass over the rows. x, delta, sum and out share a dtype.
   */
  addRmsNorm(
    x: DeviceTensor,
    delta: DeviceTensor,
    sum: DeviceTensor,
    weight: DeviceTensor,
    out: DeviceTensor,
    rstd: DeviceTensor,
    eps: number,
  ): void {
    this.own(x, delta, sum, weight, out, rstd);
    this.addon.addRmsNorm(x.handle, delta.handle, sum.handle, weight.handle, out.handle, rstd.handle, eps);
  }

  /**
   * RMSNorm's backward from the forward's `rstd`: `dx` = (or, with `accumulateDx`, +=) the gradient w.r.t.
   * x, and `dWeight` (fp32 [H], or null to skip) += sum over rows of `dOut * x * rstd`.
   */
  rmsNormBackward(
    dOut: DeviceTensor,
    x: DeviceTensor,
    weight: DeviceTensor,
    rstd: DeviceTensor,
    dx: DeviceTensor,
    dWeight: DeviceTensor | null,
    accumulateDx: boolean,
  ): void {
    this.own(dOut, x, weight, rstd, dx, ...(dWeight ? [dWeight] : []));
    this.addon.rmsNormBackward(
      dOut.handle,
      x.handle,
      weight.handle,
      rstd.handle,
      dx.handle,
      dWeight?.handle ?? null,
      accumulateDx,
    );
  }

  /**
   * Rotary position embedding in place on x [N, heads * headDim] (HF rotate_half): at position
   * s = n mod seqLen, for i < headDim / 2, `(x[i], x[i + d/2]) -> (x1 c - x2 s, x2 c + x1 s)` with
   * c = cos[s, i], s = sin[s, i] from fp32 tables [maxPos, headDim / 2] (maxPos >= seqLen). `inverse`
   * rotates by minus the angle: that is rope's backward. With `rowStride`, x's token rows are that many
   * elements apart and the first `heads` heads of each are rotated: q and k of a fused [N, Q + 2 KV]
   * projection in one pass (heads = q heads + kv heads).
   */
  rope(
    x: DeviceTensor,
    cos: DeviceTensor,
    sin: DeviceTensor,
    seqLen: number,
    heads: number,
    headDim: number,
    inverse = false,
    rowStride = 0,
  ): void {
    this.own(x, cos, sin);
    this.addon.rope(x.handle, cos.handle, sin.handle, seqLen, heads, headDim, inverse, rowStride);
  }

  /**
   * Causal grouped-query softmax attention, flash style on the GPU (no [t, t] matrix in memory): `out` =
   * softmax(q k^T * scale, masked) v per head, and `lse` (fp32 [batch, heads, seqLen], overwritten) the
   * log-sum-exp of each row's scaled, masked scores, which the backward needs. q, k, v and out share one
   * activation dtype. A query with no visible key (only when lengths[b] = 0) gets out = 0 and lse = 0.
   *
   * @example
   * ```ts
   * const dims = { batch: 1, seqLen: 4, heads: 4, kvHeads: 2, headDim: 8 };
   * const q = device.tensor(new Float32Array(4 * 32).fill(0.1), [4, 32], 'bfloat16');
   * const kv = device.tensor(new Float32Array(4 * 16).fill(0.2), [4, 16], 'bfloat16');
   * const out = device.empty([4, 32], 'bfloat16');
   * const lse = device.empty([1, 4, 4], 'float32');
   * device.attention(q, kv, kv, out, lse, dims); // out ≈ 0.2 (v in bf16); lse[s] = 0.0567 + log(s + 1)
   * ```
   */
  attention(
    q: DeviceTensor,
    k: DeviceTensor,
    v: DeviceTensor,
    out: DeviceTensor,
    lse: DeviceTensor,
    dims: AttentionDims,
  ): void {
    this.own(q, k, v, out, lse, ...(dims.lengths ? [dims.lengths] : []));
    this.addon.attention(q.handle, k.handle, v.handle, out.handle, lse.handle, ...this.attentionArgs(dims));
  }

  /**
   * Attention's backward from the forward's `out` and `lse`: P is recomputed, D = rowsum(dOut * out),
   * dS = P (dOut v^T - D) scale; `dq` = dS k, `dk` = dS^T q and `dv` = P^T dOut summed over the query heads
   * of each kv head (all overwritten, the activation dtype). Deterministic: no atomics. Uses an fp32
   * workspace of batch * heads * seqLen values, returned to the pool before it returns.
   */
  attentionBackward(
    q: DeviceTensor,
    k: DeviceTensor,
    v: DeviceTensor,
    out: DeviceTensor,
    dOut: DeviceTensor,
    lse: DeviceTensor,
    dq: DeviceTensor,
    dk: DeviceTensor,
    dv: DeviceTensor,
    dims: AttentionDims,
  ): void {
    this.own(q, k, v, out, dOut, lse, dq, dk, dv, ...(dims.lengths ? [dims.lengths] : []));
    this.addon.attentionBackward(
      q.handle,
      k.handle,
      v.handle,
      out.handle,
      dOut.handle,
      lse.handle,
      dq.handle,
      dk.handle,
      dv.handle,
      ...this.attentionArgs(dims),
    );
  }

  /**
   * `out = silu(gate) * up` (silu(x) = x / (1 + exp(-x))) for out [N, I], gate and up the two halves of each
   * row of the fused gate / up projection `gateUp` [N, 2 I] (gate first). I is out's last dimension.
   */
  swiglu(gateUp: DeviceTensor, out: DeviceTensor): void {
    this.own(gateUp, out);
    this.addon.swiglu(gateUp.handle, out.handle, out.shape[out.shape.length - 1]!);
  }

  /**
   * The gradients of `silu(gate) * up` w.r.t. gate and up, `dGateUp` [N, 2 I] in gateUp's layout
   * (overwritten; it may be `gateUp` itself), from `dOut` [N, I] (I its last dimension).
   */
  swigluBackward(gateUp: DeviceTensor, dOut: DeviceTensor, dGateUp: DeviceTensor): void {
    this.own(gateUp, dOut, dGateUp);
    this.addon.swigluBackward(gateUp.handle, dOut.handle, dGateUp.handle, dOut.shape[dOut.shape.length - 1]!);
  }

  /** `out = a + b` elementwise (one size; `out` may be `a` or `b`): the residual connection. */
  add(a: DeviceTensor, b: DeviceTensor, out: DeviceTensor): void {
    this.own(a, b, out);
    this.addon.add(a.handle, b.handle, out.handle);
  }

  /** `x[n, c] += bias[c]` in place, x [N, C] (qkv biases of Qwen2-style models). */
  addBias(x: DeviceTensor, bias: DeviceTensor): void {
    this.own(x, bias);
    this.addon.addBias(x.handle, bias.handle);
  }

  /**
   * `dBias[c] += sum_n dOut[n, c]` (dBias fp32 [C], accumulated). With `rowStride`, dOut's rows are that many
   * elements apart (one bias's columns of a fused projection, dOut a view starting at its first column).
   */
  biasBackward(dOut: DeviceTensor, dBias: DeviceTensor, rowStride = 0): void {
    this.own(dOut, dBias);
    this.addon.biasBackward(dOut.handle, dBias.handle, rowStride);
  }

  /**
   * Cross-entropy per row of logits [n, V]: `losses[r]` (fp32 [n], overwritten) = logsumexp(row) -
   * row[label], or 0 where the label is negative (HF's -100). With `gradScale` != 0 the logits are
   * overwritten by their gradient, `(softmax(row) - onehot(label)) * gradScale` (zero rows for ignored
   * labels); with 0 they are left untouched. Labels >= V are the caller's to reject: such a row gets a NaN
   * loss and a zero gradient, never a read out of range.
   *
   * @example
   * ```ts
   * const logits = device.tensor(Float32Array.of(0, 0, 0, 0), [2, 2], 'float32');
   * const losses = device.empty([2], 'float32');
   * device.crossEntropy(logits, device.tensor(Int32Array.of(1, -100), [2], 'int32'), losses, 1);
   * losses.read(); // [0.6931, 0]; logits now [0.5, -0.5, 0, 0]
   * ```
   */
  crossEntropy(logits: DeviceTensor, labels: DeviceTensor, losses: DeviceTensor, gradScale: number): void {
    this.own(logits, labels, losses);
    this.addon.crossEntropy(logits.handle, labels.handle, losses.handle, gradScale);
  }

  /** `out[r]` (int32 [n]) = the index of row r's maximum in x [n, V], the first on ties (token accuracy). */
  argmaxRows(x: DeviceTensor, out: DeviceTensor): void {
    this.own(x, out);
    this.addon.argmaxRows(x.handle, out.handle);
  }

  /** The sum of all elements of a float tensor, accumulated in double (per-token losses are summed with it). */
  sum(x: DeviceTensor): number {
    this.own(x);
    return this.addon.sum(x.handle);
  }

  /** Waits for queued work (kernels are asynchronous on the GPU). */
  synchronize(): void {
    this.addon.synchronize(this.ctx);
  }

  /** The allocator's accounting: bytes in use by kind, reserved, cached, peaks. */
  memory(): AllocatorStats {
    return this.addon.memoryStats(this.ctx);
  }

  /** @internal The addon's context handle (process groups are made for a device). */
  get contextHandle(): Handle {
    return this.ctx;
  }

  /** @internal Throws unless every tensor lives on this device. */
  checkOwns(...tensors: DeviceTensor[]): void {
    this.own(...tensors);
  }

  /** Returns cached free blocks to the device. */
  emptyCache(): void {
    this.addon.emptyCache(this.ctx);
  }

  /** Starts the peak counters afresh from the current values. */
  resetPeaks(): void {
    this.addon.resetPeaks(this.ctx);
  }

  private attentionArgs(
    dims: AttentionDims,
  ): [number, number, number, number, number, number, boolean, Handle | null, number, number] {
    return [
      dims.batch,
      dims.seqLen,
      dims.heads,
      dims.kvHeads,
      dims.headDim,
      dims.scale ?? 1 / Math.sqrt(dims.headDim),
      dims.causal ?? true,
      dims.lengths?.handle ?? null,
      dims.qStride ?? 0,
      dims.kvStride ?? 0,
    ];
  }

  private own(...tensors: DeviceTensor[]): void {
    for (const t of tensors) {
      if (t.contextId !== this.id)
        throw new BadamOptionError(
          'tensor',
          'from another device',
          `a tensor of this ${this.description.kind} device`,
        );
    }
  }
}
