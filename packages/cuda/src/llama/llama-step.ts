import { layerBackward } from './llama-backward.js';
import type { PreparedBatch } from './llama-batch.js';
import { layerForward, type SavedLayer } from './llama-forward.js';
import type { GradientBuffers } from './llama-gradients.js';
import { headChunks } from './llama-head.js';
import type { LlamaNet } from './llama-net.js';
import type { StepTensors } from './step-tensors.js';

/** The index of the layer a parameter name belongs to, or undefined. */
export function layerOf(name: string): number | undefined {
  const m = /^model\.layers\.(\d+)\./.exec(name);
  return m ? Number(m[1]) : undefined;
}

/**
 * Forward, loss and backward of one micro-batch; returns the loss and adds the gradients of `grads`' names.
 *
 * Memory, in the order packages/core's Llama step memory model follows: the batch's ids (and lengths); the
 * embedding's output; each layer's forward (layerForward) keeping, from the lowest trainable layer up, its
 * input (checkpointing) or its activations, and its output; the final norm's output and rstd; the head's
 * gradient buffer, fetched here (a backend allocates it on this first request); d loss / d hf (fp32); the
 * loss chunks (headChunks); then the final norm's backward (its gradient fetched first) into g, and each
 * trainable layer's backward from the top, its gradients fetched as it starts, its input and activations
 * freed as it ends; the embedding's gradient last.
 */
export function trainStep(net: LlamaNet, p: PreparedBatch, grads: GradientBuffers, t: StepTensors): number {
  const { n } = p;
  const H = net.config.hiddenSize;
  const L = net.layers.length;
  const embedTrainable = grads.has('model.embed_tokens.weight');
  // The lowest layer backward must reach: 0 when the embedding trains, L when no layer does.
  let lowest = L;
  for (const name of grads.trainable) lowest = Math.min(lowest, layerOf(name) ?? L);
  if (embedTrainable) lowest = 0;
  const headName = net.lmHead ? 'lm_head.weight' : 'model.embed_tokens.weight';
  // d loss / d (final hidden state) is needed when anything at or below the final norm trains.
  const needHiddenGrad = embedTrainable || lowest < L || grads.has('model.norm.weight');
  const count = p.rows.length;
  if (count === 0) return 0; // nothing predicts a label: loss 0, no gradient (HF would give NaN)

  // ---- forward
  // x [N, H] = embed_tokens[ids]
  let x = t.alloc([n, H], net.dtype, 'activations');
  net.device.embedding(net.embed, p.ids, x);
  // Below the lowest trainable layer: forward only, in place, nothing kept.
  for (let l = 0; l < lowest; l++) layerForward(net, net.layers[l]!, x, p, t, 'inplace');
  const saved: SavedLayer[] = [];
  for (let l = lowest; l < L; l++) {
    const mode = net.gradientCheckpointing ? 'checkpoint' : 'save';
    const { out, acts } = layerForward(net, net.layers[l]!, x, p, t, mode);
    saved[l] = acts ? { kind: 'all', acts } : { kind: 'input', x };
    x = out;
  }
  // hf [N, H] = norm(x), rstdF [N]
  const xL = x;
  const hf = t.alloc([n, H], net.dtype, 'activations');
  const rstdF = t.alloc([n], 'float32', 'activations');
  net.device.rmsNorm(xL, net.norm, hf, rstdF, net.config.rmsNormEps);
  // ---- loss (and d loss / d hf, fp32 [N, H], scattered from the labelled rows)
  const headGrad = grads.get(headName);
  const dHf = needHiddenGrad ? t.alloc([n, H], 'float32', 'workspace').fill(0) : null;
  const { lossSum } = headChunks(net, p, hf, dHf, headGrad, t, false);
  t.release(hf);
  if (dHf === null) return lossSum / count;

  // ---- backward
  // g [N, H]: d loss / d (residual stream), in the activation dtype, carried down layer by layer.
  let dHfAct = dHf;
  if (net.dtype !== 'float32') {
    dHfAct = t.alloc([n, H], net.dtype, 'workspace');
    net.device.cast(dHf, dHfAct);
  }
  const g = t.alloc([n, H], net.dtype, 'workspace');
  const normGrad = grads.get('model.norm.weight');
  net.device.rmsNormBackward(dHfAct, xL, net.norm, rstdF, g, normGrad, false);
  t.release(dHf, rstdF, dHfAct, xL);
  for (let l = L - 1; l >= lowest; l--) {
    const layer = net.layers[l]!;
    const s = saved[l]!;
    grads.fetch((name) => layerOf(name) === l);
    // With gradient checkpointing the layer runs forward again here, keeping what backward needs.
    const acts = s.kind === 'all' ? s.acts : layerForward(net, layer, s.x, p, t, 'recompute').acts!;
    layerBackward(net, layer, acts, g, grads, l > lowest || embedTrainable, p, t);
    t.release(...Object.values(acts));
  }
  // d embed_tokens[ids] += g
  const dEmbed = grads.get('model.embed_tokens.weight');
  if (dEmbed !== null) net.device.embeddingBackward(g, p.ids, dEmbed);
  return lossSum / count;
}

/** The forward over every layer in place and the loss (and argmax hits) of the labelled rows, no gradient. */
export function evaluatePass(
  net: LlamaNet,
  p: PreparedBatch,
  t: StepTensors,
): { lossSum: number; correct: number } {
  const { n } = p;
  const H = net.config.hiddenSize;
  // x [N, H] = embed[ids]; every layer in place; hf [N, H] = norm(x)
  const x = t.alloc([n, H], net.dtype, 'activations');
  net.device.embedding(net.embed, p.ids, x);
  for (const layer of net.layers) layerForward(net, layer, x, p, t, 'inplace');
  const hf = t.alloc([n, H], net.dtype, 'activations');
  net.device.rmsNorm(x, net.norm, hf, t.alloc([n], 'float32', 'workspace'), net.config.rmsNormEps);
  return headChunks(net, p, hf, null, null, t, true);
}
