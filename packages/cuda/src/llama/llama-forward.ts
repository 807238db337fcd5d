import type { TensorDType } from '../addon.js';
import type { AttentionDims } from '../device.js';
import type { DeviceTensor } from '../device-tensor.js';
import type { PreparedBatch } from './llama-batch.js';
import type { Layer, Linear, LlamaNet } from './llama-net.js';
import type { StepTensors } from './step-tensors.js';

export /** What backward needs of one layer (h, h2 and silu(gate) * up are recomputed: one cheap op each). */
interface LayerActivations {
  /** [N, H] the layer's input. */
  x: DeviceTensor;
  /** [N, Q] after RoPE. */
  q: DeviceTensor;
  /** [N, KV] after RoPE. */
  k: DeviceTensor;
  /** [N, KV]. */
  v: DeviceTensor;
  /** [N, Q] attention output (before o_proj). */
  attn: DeviceTensor;
  /** fp32 [B, heads, S] log-sum-exp of the attention scores. */
  lse: DeviceTensor;
  /** [N, H] x + o_proj(attn). */
  x1: DeviceTensor;
  /** [N, I]. */
  gate: DeviceTensor;
  /** [N, I]. */
  up: DeviceTensor;
  /** fp32 [N] of input_layernorm and post_attention_layernorm. */
  rstd1: DeviceTensor;
  rstd2: DeviceTensor;
}

/** A layer's inputs kept for backward: everything, or (gradient checkpointing) the input alone. */
export type SavedLayer = { kind: 'all'; acts: LayerActivations } | { kind: 'input'; x: DeviceTensor };

/** What {@link layerForward} keeps: everything backward needs, the input only, or nothing. */
export type LayerForwardMode = 'inplace' | 'save' | 'checkpoint' | 'recompute';

/**
 * One decoder layer forward on x [N, H].
 * - 'inplace': x becomes the layer's output, nothing is kept (layers below the lowest trainable one, eval).
 * - 'save': returns a new output and keeps every activation backward needs.
 * - 'checkpoint': returns a new output, keeps nothing but x (the caller keeps it).
 * - 'recompute': backward's replay of a checkpointed layer: keeps the activations, skips the MLP's
 *   down_proj and the output, which backward does not need.
 */
export function layerForward(
  net: LlamaNet,
  layer: Layer,
  x: DeviceTensor,
  p: PreparedBatch,
  t: StepTensors,
  mode: LayerForwardMode,
): { out: DeviceTensor; acts: LayerActivations | undefined } {
  const { n } = p;
  const { hiddenSize: H, intermediateSize: I, rmsNormEps: eps } = net.config;
  const Q = net.config.numHeads * net.config.headDim;
  const KV = net.config.numKeyValueHeads * net.config.headDim;
  const keep = mode === 'save' || mode === 'recompute';
  const dt = net.dtype;
  const buffer = (name: string, shape: number[], dtype: TensorDType = dt) =>
    keep ? t.alloc(shape, dtype, 'activations') : t.scratchOf(name, shape, dtype);
  // A replay in backward borrows backward's own [N, H] scratch (free at that point) for h and ao.
  const [hName, aoName] = mode === 'recompute' ? ['bh', 'dh'] : ['h', 'ao'];
  // h [N, H] = input_layernorm(x), rstd1 [N]
  const h = t.scratchOf(hName, [n, H], dt);
  const rstd1 = buffer('rstd1', [n], 'float32');
  net.device.rmsNorm(x, layer.inputNorm, h, rstd1, eps);
  // q [N, Q], k [N, KV], v [N, KV] = h W^T (+ b)
  const q = buffer('q', [n, Q]);
  const k = buffer('k', [n, KV]);
  const v = buffer('v', [n, KV]);
  linearForward(net, h, layer.q, q);
  linearForward(net, h, layer.k, k);
  linearForward(net, h, layer.v, v);
  // RoPE on q and k, in place
  const { numHeads, numKeyValueHeads, headDim } = net.config;
  net.device.rope(q, net.cos, net.sin, p.s, numHeads, headDim, false);
  net.device.rope(k, net.cos, net.sin, p.s, numKeyValueHeads, headDim, false);
  // attn [N, Q] = causal GQA attention, lse [B, heads, S]
  const attn = buffer('attn', [n, Q]);
  const lse = buffer('lse', [p.b, numHeads, p.s], 'float32');
  net.device.attention(q, k, v, attn, lse, attentionDims(net, p));
  // x1 [N, H] = x + attn Wo^T (+ b)
  const ao = t.scratchOf(aoName, [n, H], dt);
  linearForward(net, attn, layer.o, ao);
  const x1 = mode === 'inplace' ? x : buffer('x1', [n, H]);
  net.device.add(x, ao, x1);
  // h2 [N, H] = post_attention_layernorm(x1), rstd2 [N]
  const h2 = h;
  const rstd2 = buffer('rstd2', [n], 'float32');
  net.device.rmsNorm(x1, layer.postNorm, h2, rstd2, eps);
  // gate, up [N, I] = h2 W^T (+ b)
  const gate = buffer('gate', [n, I]);
  const up = buffer('up', [n, I]);
  linearForward(net, h2, layer.gate, gate);
  linearForward(net, h2, layer.up, up);
  const acts: LayerActivations | undefined = keep
    ? { x, q, k, v, attn, lse, x1, gate, up, rstd1, rstd2 }
    : undefined;
  if (mode === 'recompute') return { out: x1, acts };
  // act [N, I] = silu(gate) * up; out [N, H] = x1 + act Wd^T (+ b)
  const act = t.scratchOf('act', [n, I], dt);
  net.device.swiglu(gate, up, act);
  const down = ao;
  linearForward(net, act, layer.down, down);
  const out = mode === 'inplace' ? x : t.alloc([n, H], dt, 'activations');
  net.device.add(x1, down, out);
  return { out, acts };
}

/** y [N, out] = x [N, in] W^T (+ b). */
export function linearForward(net: LlamaNet, x: DeviceTensor, l: Linear, y: DeviceTensor): void {
  const [out, inp] = l.weight.shape as [number, number];
  net.device.gemm(x, l.weight, y, { m: x.numel / inp, n: out, k: inp, transB: true });
  if (l.bias) net.device.addBias(y, l.bias);
}

export function attentionDims(net: LlamaNet, p: PreparedBatch): AttentionDims {
  return {
    batch: p.b,
    seqLen: p.s,
    heads: net.config.numHeads,
    kvHeads: net.config.numKeyValueHeads,
    headDim: net.config.headDim,
    lengths: p.lengths,
  };
}
