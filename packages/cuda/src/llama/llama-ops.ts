import type { AttentionDims, Device } from '../device.js';
import type { DeviceTensor } from '../device-tensor.js';
import { hostLlamaOps } from './host-llama-ops.js';

/** Shapes of one attention call (the Device's {@link AttentionDims}). */
export type LlamaAttentionDims = AttentionDims;

/**
 * The Llama ops of issue 12 as the model calls them (`Device` methods, see the ops spec): every shape is
 * taken from the tensors, act = activation dtype, "+=" outputs are fp32 gradient buffers.
 */
export interface LlamaOps {
  /** out[n] = table[ids[n]]: [V, H], int32 [N] -> [N, H]. Also a row gather of any [V, H] tensor. */
  embedding(table: DeviceTensor, ids: DeviceTensor, out: DeviceTensor): void;
  /** dTable[ids[n]] += dOut[n] (dTable fp32): also a row scatter-add. */
  embeddingBackward(dOut: DeviceTensor, ids: DeviceTensor, dTable: DeviceTensor): void;
  /** HF LlamaRMSNorm over rows; rstd fp32 [N] (=) is kept for backward. */
  rmsNorm(x: DeviceTensor, weight: DeviceTensor, out: DeviceTensor, rstd: DeviceTensor, eps: number): void;
  rmsNormBackward(
    dOut: DeviceTensor,
    x: DeviceTensor,
    weight: DeviceTensor,
    rstd: DeviceTensor,
    dx: DeviceTensor,
    dWeight: DeviceTensor | null,
    accumulateDx: boolean,
  ): void;
  /** rotate_half RoPE in place at position n mod seqLen; `inverse` rotates back (rope's backward). */
  rope(
    x: DeviceTensor,
    cos: DeviceTensor,
    sin: DeviceTensor,
    seqLen: number,
    heads: number,
    headDim: number,
    inverse: boolean,
  ): void;
  attention(
    q: DeviceTensor,
    k: DeviceTensor,
    v: DeviceTensor,
    out: DeviceTensor,
    lse: DeviceTensor,
    dims: LlamaAttentionDims,
  ): void;
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
    dims: LlamaAttentionDims,
  ): void;
  swiglu(gate: DeviceTensor, up: DeviceTensor, out: DeviceTensor): void;
  swigluBackward(
    gate: DeviceTensor,
    up: DeviceTensor,
    dOut: DeviceTensor,
    dGate: DeviceTensor,
    dUp: DeviceTensor,
  ): void;
  add(a: DeviceTensor, b: DeviceTensor, out: DeviceTensor): void;
  addBias(x: DeviceTensor, bias: DeviceTensor): void;
  biasBackward(dOut: DeviceTensor, dBias: DeviceTensor): void;
  /** Per-row loss (=); with gradScale != 0 the logits become dLogits in place (ignored rows: 0). */
  crossEntropy(logits: DeviceTensor, labels: DeviceTensor, losses: DeviceTensor, gradScale: number): void;
  argmaxRows(x: DeviceTensor, out: DeviceTensor): void;
  sum(x: DeviceTensor): number;
}

/** The op names the model needs from the device. */
export const LLAMA_OP_NAMES = [
  'embedding',
  'embeddingBackward',
  'rmsNorm',
  'rmsNormBackward',
  'rope',
  'attention',
  'attentionBackward',
  'swiglu',
  'swigluBackward',
  'add',
  'addBias',
  'biasBackward',
  'crossEntropy',
  'argmaxRows',
  'sum',
] as const satisfies readonly (keyof LlamaOps)[];

/**
 * The ops for `device`: its own kernels, except for any it lacks (an addon built before issue 12's
 * kernels) or any named in `hostOps` (default: the environment variable BADAM_LLAMA_HOST_OPS, a comma
 * list of op names or `all`), which run on the host: the tensors are read, the op computed in fp32 in
 * JavaScript and the result written back rounded to its dtype. That is slow, meant for tests, small
 * models, and for ruling a kernel in or out when a model's numbers look wrong on one device.
 */
export function llamaOpsOf(
  device: Device,
  hostOps: readonly string[] = (process.env.BADAM_LLAMA_HOST_OPS ?? '').split(',').filter((s) => s !== ''),
): LlamaOps {
  const host = hostLlamaOps();
  const own = device as unknown as Partial<Record<keyof LlamaOps, unknown>>;
  const ops = {} as Record<keyof LlamaOps, unknown>;
  for (const name of LLAMA_OP_NAMES) {
    const method = own[name];
    const onHost = hostOps.includes('all') || hostOps.includes(name) || typeof method !== 'function';
    ops[name] = onHost ? host[name] : (method as (...args: unknown[]) => unknown).bind(device);
  }
  return ops as unknown as LlamaOps;
}

/** The op names `device` lacks (served by the host fallback). */
export function missingLlamaOps(device: Device): string[] {
  const own = device as unknown as Record<string, unknown>;
  return LLAMA_OP_NAMES.filter((name) => typeof own[name] !== 'function');
}
