import type { DeviceTensor } from '../device-tensor.js';
import type { PreparedBatch } from './llama-batch.js';
import { attentionDims, type LayerActivations } from './llama-forward.js';
import type { Layer, Linear, LlamaNet } from './llama-net.js';
import type { StepTensors } from './step-tensors.js';

/**
 * One decoder layer backward. `g` [N, H] holds d loss / d (layer output) and becomes d loss / d (layer
 * input) in place (when `needInputGrad`; else it is left partial). Weight gradients are added only for
 * the parameters in `grads`.
 */
export function layerBackward(
  net: LlamaNet,
  layer: Layer,
  a: LayerActivations,
  g: DeviceTensor,
  grads: Map<string, DeviceTensor>,
  needInputGrad: boolean,
  p: PreparedBatch,
  t: StepTensors,
): void {
  const { n } = p;
  const { hiddenSize: H, intermediateSize: I, rmsNormEps: eps } = net.config;
  const { numHeads, numKeyValueHeads, headDim } = net.config;
  const Q = numHeads * headDim;
  const KV = numKeyValueHeads * headDim;
  const dt = net.dtype;
  const trains = (l: Linear) => grads.has(`${l.name}.weight`) || grads.has(`${l.name}.bias`);
  const inputNormGrad = grads.get(layer.inputNormName) ?? null;
  const postNormGrad = grads.get(layer.postNormName) ?? null;
  const attentionSideTrains = inputNormGrad !== null || [layer.q, layer.k, layer.v].some(trains);

  // --- MLP: out = x1 + down(silu(gate) * up)
  // h2 [N, H] = post_attention_layernorm(x1), act [N, I] = silu(gate) * up: recomputed for weight gradients
  const h2 = t.scratchOf('bh', [n, H], dt);
  if (trains(layer.gate) || trains(layer.up)) net.device.rmsNorm(a.x1, layer.postNorm, h2, a.rstd2, eps);
  const dAct = t.scratchOf('dAct', [n, I], dt);
  if (trains(layer.down)) {
    const act = dAct; // free until dAct is computed below
    net.device.swiglu(a.gate, a.up, act);
    linearWeightGrad(net, g, act, layer.down, grads);
  }
  // dAct [N, I] = g Wd
  net.device.gemm(g, layer.down.weight, dAct, { m: n, n: I, k: H });
  // dGate, dUp [N, I]
  const dGate = t.scratchOf('dGate', [n, I], dt);
  const dUp = t.scratchOf('dUp', [n, I], dt);
  net.device.swigluBackward(a.gate, a.up, dAct, dGate, dUp);
  linearWeightGrad(net, dGate, h2, layer.gate, grads);
  linearWeightGrad(net, dUp, h2, layer.up, grads);
  // dh2 [N, H] = dGate Wg + dUp Wu; g += post_attention_layernorm'(dh2)
  const dh = t.scratchOf('dh', [n, H], dt);
  net.device.gemm(dGate, layer.gate.weight, dh, { m: n, n: H, k: I });
  net.device.gemm(dUp, layer.up.weight, dh, { m: n, n: H, k: I, beta: 1 });
  net.device.rmsNormBackward(dh, a.x1, layer.postNorm, a.rstd2, g, postNormGrad, true);

  // --- attention: x1 = x + o(attention(rope(q(h)), rope(k(h)), v(h))), h = input_layernorm(x)
  linearWeightGrad(net, g, a.attn, layer.o, grads);
  if (!needInputGrad && !attentionSideTrains) return; // nothing below o_proj trains or needs a gradient
  // dAttn [N, Q] = g Wo
  const dAttn = t.scratchOf('dAttn', [n, Q], dt);
  net.device.gemm(g, layer.o.weight, dAttn, { m: n, n: Q, k: H });
  // dq [N, Q], dk, dv [N, KV]; RoPE's backward is the inverse rotation
  const dq = t.scratchOf('dq', [n, Q], dt);
  const dk = t.scratchOf('dk', [n, KV], dt);
  const dv = t.scratchOf('dv', [n, KV], dt);
  net.device.attentionBackward(a.q, a.k, a.v, a.attn, dAttn, a.lse, dq, dk, dv, attentionDims(net, p));
  net.device.rope(dq, net.cos, net.sin, p.s, numHeads, headDim, true);
  net.device.rope(dk, net.cos, net.sin, p.s, numKeyValueHeads, headDim, true);
  // h [N, H] = input_layernorm(x), recomputed for the q/k/v weight gradients
  const h = h2;
  if ([layer.q, layer.k, layer.v].some(trains)) {
    net.device.rmsNorm(a.x, layer.inputNorm, h, a.rstd1, eps);
    linearWeightGrad(net, dq, h, layer.q, grads);
    linearWeightGrad(net, dk, h, layer.k, grads);
    linearWeightGrad(net, dv, h, layer.v, grads);
  }
  if (!needInputGrad && inputNormGrad === null) return;
  // dh [N, H] = dq Wq + dk Wk + dv Wv; g += input_layernorm'(dh)
  net.device.gemm(dq, layer.q.weight, dh, { m: n, n: H, k: Q });
  net.device.gemm(dk, layer.k.weight, dh, { m: n, n: H, k: KV, beta: 1 });
  net.device.gemm(dv, layer.v.weight, dh, { m: n, n: H, k: KV, beta: 1 });
  net.device.rmsNormBackward(dh, a.x, layer.inputNorm, a.rstd1, g, inputNormGrad, true);
}

/** dW [out, in] += dy^T x and db [out] += colsum(dy), straight into the fp32 gradient buffers, when trainable. */
export function linearWeightGrad(
  net: LlamaNet,
  dy: DeviceTensor,
  x: DeviceTensor,
  l: Linear,
  grads: Map<string, DeviceTensor>,
): void {
  const [out, inp] = l.weight.shape as [number, number];
  const dW = grads.get(`${l.name}.weight`);
  if (dW) net.device.gemm(dy, x, dW, { m: out, n: inp, k: x.numel / inp, transA: true, beta: 1 });
  const db = l.bias ? grads.get(`${l.name}.bias`) : undefined;
  if (db) net.device.biasBackward(dy, db);
}
