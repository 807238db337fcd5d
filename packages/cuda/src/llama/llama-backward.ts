import type { DeviceTensor } from '../device-tensor.js';
import type { PreparedBatch } from './llama-batch.js';
import { attentionDims, type LayerActivations, qkvBlocks } from './llama-forward.js';
import type { GradientBuffers } from './llama-gradients.js';
import { type Layer, type Linear, type LlamaNet, layerSizes } from './llama-net.js';
import type { StepTensors } from './step-tensors.js';

/**
 * One decoder layer backward. `g` [N, H] holds d loss / d (layer output) and becomes d loss / d (layer
 * input) in place (when `needInputGrad`; else it is left partial). Weight gradients are added only for the
 * parameters `grads` has. Every tensor it allocates is freed when it returns, in this order (packages/core's
 * Llama step memory model follows it): h2 [N, H], dAct [N, I] (freed after the SwiGLU backward, which writes
 * dGate | dUp over the activations' gate | up), dh [N, H], then (when anything below o_proj trains or an
 * input gradient is needed) dAttn [N, Q] and dqkv [N, Q + 2 KV].
 */
export function layerBackward(
  net: LlamaNet,
  layer: Layer,
  a: LayerActivations,
  g: DeviceTensor,
  grads: GradientBuffers,
  needInputGrad: boolean,
  p: PreparedBatch,
  t: StepTensors,
): void {
  t.scope(() => {
    const { n } = p;
    const z = layerSizes(net.config);
    const { H, Q, W3, I } = z;
    const eps = net.config.rmsNormEps;
    const dt = net.dtype;
    const inputNormGrad = grads.get(layer.inputNormName);
    const postNormGrad = grads.get(layer.postNormName);
    const qkvTrain = [layer.q, layer.k, layer.v].some((l) => trains(l, grads));
    const attentionSideTrains = inputNormGrad !== null || qkvTrain;

    // --- MLP: out = x1 + down(silu(gate) * up)
    // h2 [N, H] = post_attention_layernorm(x1), act [N, I] = silu(gate) * up: recomputed for weight gradients
    const h2 = t.alloc([n, H], dt, 'workspace');
    if (trains(layer.gate, grads) || trains(layer.up, grads))
      net.device.rmsNorm(a.x1, layer.postNorm, h2, a.rstd2, eps);
    const dAct = t.alloc([n, I], dt, 'workspace');
    if (trains(layer.down, grads)) {
      const act = dAct; // free until dAct is computed below
      net.device.swiglu(a.gateUp, act);
      linearWeightGrad(net, g, act, layer.down, grads);
    }
    // dAct [N, I] = g Wd; dGate | dUp [N, 2 I] written over gate | up (the activation is not needed again)
    net.device.gemm(g, layer.down.weight, dAct, { m: n, n: I, k: H });
    const dGateUp = a.gateUp;
    net.device.swigluBackward(a.gateUp, dAct, dGateUp);
    t.release(dAct);
    linearWeightGrad(net, columns(t, dGateUp, 0, I, 2 * I, n), h2, layer.gate, grads, 2 * I);
    linearWeightGrad(net, columns(t, dGateUp, I, I, 2 * I, n), h2, layer.up, grads, 2 * I);
    // dh2 [N, H] = dGateUp [Wg; Wu]: one GEMM through the fused weights; g += post_attention_layernorm'(dh2)
    const dh = t.alloc([n, H], dt, 'workspace');
    net.device.gemm(dGateUp, t.view(layer.gate.weight, 0, [2 * I, H]), dh, { m: n, n: H, k: 2 * I });
    net.device.rmsNormBackward(dh, a.x1, layer.postNorm, a.rstd2, g, postNormGrad, true);

    // --- attention: x1 = x + o(attention(rope(q(h)), rope(k(h)), v(h))), h = input_layernorm(x)
    linearWeightGrad(net, g, a.attn, layer.o, grads);
    if (!needInputGrad && !attentionSideTrains) return; // nothing below o_proj trains or needs a gradient
    // dAttn [N, Q] = g Wo
    const dAttn = t.alloc([n, Q], dt, 'workspace');
    net.device.gemm(g, layer.o.weight, dAttn, { m: n, n: Q, k: H });
    // dq | dk | dv [N, Q + 2 KV], written into the column blocks of one buffer; RoPE's backward is the
    // inverse rotation, of dq and dk in one pass
    const dqkv = t.alloc([n, W3], dt, 'workspace');
    const [q, k, v] = qkvBlocks(t, a.qkv, n, z);
    const [dq, dk, dv] = qkvBlocks(t, dqkv, n, z);
    net.device.attentionBackward(q, k, v, a.attn, dAttn, a.lse, dq, dk, dv, attentionDims(net, p, W3));
    const heads = net.config.numHeads + net.config.numKeyValueHeads;
    net.device.rope(dqkv, net.cos, net.sin, p.s, heads, net.config.headDim, true, W3);
    // h [N, H] = input_layernorm(x), recomputed for the q / k / v weight gradients
    const h = h2;
    if (qkvTrain) {
      net.device.rmsNorm(a.x, layer.inputNorm, h, a.rstd1, eps);
      linearWeightGrad(net, dq, h, layer.q, grads, W3);
      linearWeightGrad(net, dk, h, layer.k, grads, W3);
      linearWeightGrad(net, dv, h, layer.v, grads, W3);
    }
    if (!needInputGrad && inputNormGrad === null) return;
    // dh [N, H] = dqkv [Wq; Wk; Wv]: one GEMM through the fused weights; g += input_layernorm'(dh)
    net.device.gemm(dqkv, t.view(layer.q.weight, 0, [W3, H]), dh, { m: n, n: H, k: W3 });
    net.device.rmsNormBackward(dh, a.x, layer.inputNorm, a.rstd1, g, inputNormGrad, true);
  });
}

/** Whether the linear layer has a trainable weight or bias this step. */
function trains(l: Linear, grads: GradientBuffers): boolean {
  return grads.has(`${l.name}.weight`) || grads.has(`${l.name}.bias`);
}

/** A view of `width` columns from `first` of an [n, stride] matrix (rows `stride` apart). */
function columns(
  t: StepTensors,
  x: DeviceTensor,
  first: number,
  width: number,
  stride: number,
  n: number,
): DeviceTensor {
  return t.view(x, first, [(n - 1) * stride + width]);
}

/**
 * dW [out, in] += dy^T x and db [out] += colsum(dy), straight into the gradient buffers (fp32 or the weight's
 * 16-bit dtype), when trainable. dy's rows are `stride` elements apart (a column block of a fused projection
 * when wider than out).
 */
export function linearWeightGrad(
  net: LlamaNet,
  dy: DeviceTensor,
  x: DeviceTensor,
  l: Linear,
  grads: GradientBuffers,
  stride = l.weight.shape[0]!,
): void {
  const [out, inp] = l.weight.shape as [number, number];
  const rows = x.numel / inp;
  const dW = grads.get(`${l.name}.weight`);
  if (dW) net.device.gemm(dy, x, dW, { m: out, n: inp, k: rows, transA: true, beta: 1, lda: stride });
  const db = l.bias ? grads.get(`${l.name}.bias`) : null;
  if (db) net.device.biasBackward(dy, db, stride === out ? 0 : stride);
}
