import type { AttentionDims } from '../device.js';
import type { DeviceTensor } from '../device-tensor.js';
import type { PreparedBatch } from './llama-batch.js';
import { type Layer, type LayerSizes, type Linear, type LlamaNet, layerSizes } from './llama-net.js';
import type { StepTensors } from './step-tensors.js';

/**
 * What backward needs of one layer: its input, and what the forward computed that costs a GEMM to redo. The
 * RMSNorm outputs and silu(gate) * up are recomputed in backward (one cheap op each).
 */
export interface LayerActivations {
  /** [N, H] the layer's input. */
  x: DeviceTensor;
  /** [N, Q + 2 KV]: q and k after RoPE, then v, per token (the fused projection's output). */
  qkv: DeviceTensor;
  /** [N, Q] attention output (before o_proj). */
  attn: DeviceTensor;
  /** fp32 [B, heads, S] log-sum-exp of the attention scores. */
  lse: DeviceTensor;
  /** [N, H] x + o_proj(attn). */
  x1: DeviceTensor;
  /** [N, 2 I]: gate then up, per token (the fused projection's output). */
  gateUp: DeviceTensor;
  /** fp32 [N] of input_layernorm and post_attention_layernorm. */
  rstd1: DeviceTensor;
  rstd2: DeviceTensor;
}

/** A layer's inputs kept for backward: everything, or (gradient checkpointing) the input alone. */
export type SavedLayer = { kind: 'all'; acts: LayerActivations } | { kind: 'input'; x: DeviceTensor };

/**
 * What {@link layerForward} keeps.
 * - 'inplace': x becomes the layer's output, nothing is kept (layers below the lowest trainable one, eval).
 * - 'save': returns a new output and keeps every activation backward needs.
 * - 'checkpoint': returns a new output, keeps nothing but x (the caller keeps it).
 * - 'recompute': backward's replay of a checkpointed layer: keeps the activations, skips the MLP's
 *   down_proj and the output, which backward does not need.
 */
export type LayerForwardMode = 'inplace' | 'save' | 'checkpoint' | 'recompute';

/**
 * One decoder layer forward on x [N, H]. Every tensor it allocates is freed when it returns but the kept
 * activations ('save', 'recompute') and the output ('save', 'checkpoint'), in this order (packages/core's
 * Llama step memory model follows it): h [N, H], rstd1, qkv [N, Q + 2 KV], attn [N, Q], lse, ao [N, H], x1
 * [N, H] (not in place), rstd2, gate_up [N, 2 I], then (not 'recompute') act [N, I] and the output [N, H].
 */
export function layerForward(
  net: LlamaNet,
  layer: Layer,
  x: DeviceTensor,
  p: PreparedBatch,
  t: StepTensors,
  mode: LayerForwardMode,
): { out: DeviceTensor; acts: LayerActivations | undefined } {
  return t.scope(() => {
    const { n } = p;
    const z = layerSizes(net.config);
    const { H, Q, W3, I } = z;
    const eps = net.config.rmsNormEps;
    const keep = mode === 'save' || mode === 'recompute';
    const dt = net.dtype;
    const kept = (tensor: DeviceTensor) => (keep ? t.keep(tensor) : tensor);
    // h [N, H] = input_layernorm(x), rstd1 [N]
    const h = t.alloc([n, H], dt, 'workspace');
    const rstd1 = kept(t.alloc([n], 'float32', keep ? 'activations' : 'workspace'));
    net.device.rmsNorm(x, layer.inputNorm, h, rstd1, eps);
    // qkv [N, Q + 2 KV] = h [Wq; Wk; Wv]^T (+ b): one GEMM through the fused weights; RoPE on q and k in one pass
    const qkv = kept(t.alloc([n, W3], dt, keep ? 'activations' : 'workspace'));
    fusedLinearForward(net, t, h, layer.q, W3, qkv);
    net.device.rope(
      qkv,
      net.cos,
      net.sin,
      p.s,
      net.config.numHeads + net.config.numKeyValueHeads,
      net.config.headDim,
      false,
      W3,
    );
    // attn [N, Q] = causal GQA attention over the q, k, v column blocks, lse [B, heads, S]
    const attn = kept(t.alloc([n, Q], dt, keep ? 'activations' : 'workspace'));
    const lse = kept(t.alloc([p.b, net.config.numHeads, p.s], 'float32', keep ? 'activations' : 'workspace'));
    const [q, k, v] = qkvBlocks(t, qkv, p.n, z);
    net.device.attention(q, k, v, attn, lse, attentionDims(net, p, W3));
    // x1 [N, H] = x + attn Wo^T (+ b); h2 [N, H] = post_attention_layernorm(x1), rstd2 [N]: one fused pass
    const ao = t.alloc([n, H], dt, 'workspace');
    linearForward(net, attn, layer.o, ao);
    const x1 = mode === 'inplace' ? x : kept(t.alloc([n, H], dt, keep ? 'activations' : 'workspace'));
    const rstd2 = kept(t.alloc([n], 'float32', keep ? 'activations' : 'workspace'));
    const h2 = h;
    net.device.addRmsNorm(x, ao, x1, layer.postNorm, h2, rstd2, eps);
    // gate_up [N, 2 I] = h2 [Wg; Wu]^T (+ b): one GEMM through the fused weights
    const gateUp = kept(t.alloc([n, 2 * I], dt, keep ? 'activations' : 'workspace'));
    fusedLinearForward(net, t, h2, layer.gate, 2 * I, gateUp);
    const acts: LayerActivations | undefined = keep
      ? { x, qkv, attn, lse, x1, gateUp, rstd1, rstd2 }
      : undefined;
    if (mode === 'recompute') return { out: x1, acts };
    // act [N, I] = silu(gate) * up; out [N, H] = x1 + act Wd^T (+ b)
    const act = t.alloc([n, I], dt, 'workspace');
    net.device.swiglu(gateUp, act);
    const down = ao;
    linearForward(net, act, layer.down, down);
    const out = mode === 'inplace' ? x : t.keep(t.alloc([n, H], dt, 'activations'));
    net.device.add(x1, down, out);
    return { out, acts };
  });
}

/** The q, k and v column blocks of qkv [N, Q + 2 KV], as views starting at each block (rows W3 apart). */
export function qkvBlocks(
  t: StepTensors,
  qkv: DeviceTensor,
  n: number,
  z: LayerSizes,
): [DeviceTensor, DeviceTensor, DeviceTensor] {
  const span = (first: number, width: number) => t.view(qkv, first, [(n - 1) * z.W3 + width]);
  return [span(0, z.Q), span(z.Q, z.KV), span(z.Q + z.KV, z.KV)];
}

/**
 * y [N, rows] = x [N, in] W^T (+ b) for the fused weights starting at `first` (q of q / k / v, gate of gate /
 * up): one GEMM over a view spanning the group's `rows` rows, and one bias pass.
 */
function fusedLinearForward(
  net: LlamaNet,
  t: StepTensors,
  x: DeviceTensor,
  first: Linear,
  rows: number,
  y: DeviceTensor,
): void {
  const inp = first.weight.shape[1]!;
  const weight = t.view(first.weight, 0, [rows, inp]);
  net.device.gemm(x, weight, y, { m: x.numel / inp, n: rows, k: inp, transB: true });
  if (first.bias) net.device.addBias(y, t.view(first.bias, 0, [rows]));
}

/** y [N, out] = x [N, in] W^T (+ b). */
export function linearForward(net: LlamaNet, x: DeviceTensor, l: Linear, y: DeviceTensor): void {
  const [out, inp] = l.weight.shape as [number, number];
  net.device.gemm(x, l.weight, y, { m: x.numel / inp, n: out, k: inp, transB: true });
  if (l.bias) net.device.addBias(y, l.bias);
}

/** The attention shapes of the batch; q / k / v rows `stride` elements apart (the fused projection's). */
export function attentionDims(net: LlamaNet, p: PreparedBatch, stride: number): AttentionDims {
  return {
    batch: p.b,
    seqLen: p.s,
    heads: net.config.numHeads,
    kvHeads: net.config.numKeyValueHeads,
    headDim: net.config.headDim,
    lengths: p.lengths,
    qStride: stride,
    kvStride: stride,
  };
}
