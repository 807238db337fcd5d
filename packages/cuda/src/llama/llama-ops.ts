import type { Device } from '../device.js';
import type { DeviceTensor } from '../device-tensor.js';
import { hostLlamaOps } from './host-llama-ops.js';

/** Shapes of one causal attention call: tokens are rows `n = b * seqLen + s`, heads side by side in a row. */
export interface LlamaAttentionDims {
  batch: number;
  seqLen: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** Default 1 / sqrt(headDim). */
  scale?: number;
  /** int32 [batch]: keys at positions >= lengths[b] are masked (right padding); null = no padding. */
  lengths?: DeviceTensor | null;
}

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
 * The ops for `device`: its own kernels where it has them, and for any it lacks (an addon built before
 * issue 12's kernels) a host fallback that reads the tensors, computes in fp32 in JavaScript and writes the
 * result back rounded to the output's dtype. The fallback is slow and meant for tests and small models;
 * `hostOnly` forces it for every op (a second opinion on the kernels).
 */
export function llamaOpsOf(device: Device, options: { hostOnly?: boolean } = {}): LlamaOps {
  const host = hostLlamaOps();
  const own = device as unknown as Partial<Record<keyof LlamaOps, unknown>>;
  const ops = {} as Record<keyof LlamaOps, unknown>;
  for (const name of LLAMA_OP_NAMES) {
    const method = own[name];
    ops[name] =
      !options.hostOnly && typeof method === 'function'
        ? (method as (...args: unknown[]) => unknown).bind(device)
        : host[name];
  }
  return ops as unknown as LlamaOps;
}

/** The op names `device` lacks (served by the host fallback). */
export function missingLlamaOps(device: Device): string[] {
  const own = device as unknown as Record<string, unknown>;
  return LLAMA_OP_NAMES.filter((name) => typeof own[name] !== 'function');
}
