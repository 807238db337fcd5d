import { layerBackward } from './llama-backward.js';
import type { PreparedBatch } from './llama-batch.js';
import { layerForward, type SavedLayer } from './llama-forward.js';
import type { GradientBuffers } from './llama-gradients.js';
import { headChunks } from './llama-head.js';
import type { LlamaNet, LlamaPart, LlamaStepHooks } from './llama-net.js';
import type { StepTensors } from './step-tensors.js';

/** The index of the layer a parameter name belongs to, or undefined. */
export function layerOf(name: string): number | undefined {
  const m = /^model\.layers\.(\d+)\./.exec(name);
  return m ? Number(m[1]) : undefined;
}

/**
 * Forward, loss and backward of one micro-batch; returns the loss and adds the gradients of `grads`' names.
 * With `net.hooks` (weights that come and go: a sharded model), every part of the pass is announced first
 * and acquired around each use, and a pass without labels still walks every part.
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
  const L = net.layers.length;
  const embedTrainable = grads.has('model.embed_tokens.weight');
  // The lowest layer backward must reach: 0 when the embedding trains, L when no layer does.
  let lowest = L;
  for (const name of grads.trainable) lowest = Math.min(lowest, layerOf(name) ?? L);
  if (embedTrainable) lowest = 0;
  // d loss / d (final hidden state) is needed when anything at or below the final norm trains.
  const needHiddenGrad = embedTrainable || lowest < L || grads.has('model.norm.weight');
  const count = p.rows.length;
  const hooks = net.hooks;
  if (hooks === undefined) {
    if (count === 0) return 0; // nothing predicts a label: loss 0, no gradient (HF would give NaN)
    return trainPass(net, p, grads, t, lowest, needHiddenGrad);
  }
  // The parts in the order the pass uses them: the layers again in backward, down to the lowest trained.
  const backward = needHiddenGrad ? Array.from({ length: L - lowest }, (_, i) => L - 1 - i) : [];
  const order: LlamaPart[] = ['embed', ...net.layers.map((l) => l.index), 'head', ...backward];
  hooks.begin(order);
  try {
    // A pass without labels still goes through every part: the hooks' other side may wait on each one.
    if (count === 0) return walkParts(hooks, order);
    return trainPass(net, p, grads, t, lowest, needHiddenGrad);
  } finally {
    hooks.end();
  }
}

/** Acquires and releases every part of `order` without computing; returns 0 (no labels, no loss). */
function walkParts(hooks: LlamaStepHooks, order: readonly LlamaPart[]): number {
  for (const part of order) {
    hooks.acquire(part);
    hooks.release(part);
  }
  return 0;
}

/** {@link trainStep}'s forward, loss and backward, `lowest` the lowest layer backward reaches. */
function trainPass(
  net: LlamaNet,
  p: PreparedBatch,
  grads: GradientBuffers,
  t: StepTensors,
  lowest: number,
  needHiddenGrad: boolean,
): number {
  const { n } = p;
  const H = net.config.hiddenSize;
  const L = net.layers.length;
  const count = p.rows.length;
  const hooks = net.hooks;
  // The head's weight is the embedding when tied (asked of the config: the weights may not be there yet).
  const headName = net.config.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';

  // ---- forward
  // x [N, H] = embed_tokens[ids]
  let x = t.alloc([n, H], net.dtype, 'activations');
  hooks?.acquire('embed');
  net.device.embedding(net.embed, p.ids, x);
  hooks?.release('embed');
  // Below the lowest trainable layer: forward only, in place, nothing kept.
  for (let l = 0; l < lowest; l++) {
    hooks?.acquire(l);
    layerForward(net, net.layers[l]!, x, p, t, 'inplace');
    hooks?.release(l);
  }
  const saved: SavedLayer[] = [];
  for (let l = lowest; l < L; l++) {
    const mode = net.gradientCheckpointing ? 'checkpoint' : 'save';
    hooks?.acquire(l);
    const { out, acts } = layerForward(net, net.layers[l]!, x, p, t, mode);
    hooks?.release(l);
    saved[l] = acts ? { kind: 'all', acts } : { kind: 'input', x };
    x = out;
  }
  // hf [N, H] = norm(x), rstdF [N]
  const xL = x;
  const hf = t.alloc([n, H], net.dtype, 'activations');
  const rstdF = t.alloc([n], 'float32', 'activations');
  hooks?.acquire('head');
  net.device.rmsNorm(xL, net.norm, hf, rstdF, net.config.rmsNormEps);
  // ---- loss (and d loss / d hf, fp32 [N, H], scattered from the labelled rows)
  const headGrad = grads.get(headName);
  const dHf = needHiddenGrad ? t.alloc([n, H], 'float32', 'workspace').fill(0) : null;
  const { lossSum } = headChunks(net, p, hf, dHf, headGrad, t, false);
  t.release(hf);
  if (dHf === null) {
    hooks?.release('head');
    return lossSum / count;
  }

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
  hooks?.release('head');
  t.release(dHf, rstdF, dHfAct, xL);
  const embedTrainable = grads.has('model.embed_tokens.weight');
  for (let l = L - 1; l >= lowest; l--) {
    const layer = net.layers[l]!;
    const s = saved[l]!;
    grads.fetch((name) => layerOf(name) === l);
    hooks?.acquire(l);
    // With gradient checkpointing the layer runs forward again here, keeping what backward needs.
    const acts = s.kind === 'all' ? s.acts : layerForward(net, layer, s.x, p, t, 'recompute').acts!;
    layerBackward(net, layer, acts, g, grads, l > lowest || embedTrainable, p, t);
    hooks?.release(l);
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
  const hooks = net.hooks;
  if (hooks === undefined) return evaluateParts(net, p, t);
  const order: LlamaPart[] = ['embed', ...net.layers.map((l) => l.index), 'head'];
  hooks.begin(order);
  try {
    if (p.rows.length === 0) return { lossSum: walkParts(hooks, order), correct: 0 };
    return evaluateParts(net, p, t);
  } finally {
    hooks.end();
  }
}

/** {@link evaluatePass}'s forward and loss, each part acquired around its use when the net has hooks. */
function evaluateParts(
  net: LlamaNet,
  p: PreparedBatch,
  t: StepTensors,
): { lossSum: number; correct: number } {
  const { n } = p;
  const H = net.config.hiddenSize;
  const hooks = net.hooks;
  // x [N, H] = embed[ids]; every layer in place; hf [N, H] = norm(x)
  const x = t.alloc([n, H], net.dtype, 'activations');
  hooks?.acquire('embed');
  net.device.embedding(net.embed, p.ids, x);
  hooks?.release('embed');
  for (const layer of net.layers) {
    hooks?.acquire(layer.index);
    layerForward(net, layer, x, p, t, 'inplace');
    hooks?.release(layer.index);
  }
  const hf = t.alloc([n, H], net.dtype, 'activations');
  hooks?.acquire('head');
  net.device.rmsNorm(x, net.norm, hf, t.alloc([n], 'float32', 'workspace'), net.config.rmsNormEps);
  const result = headChunks(net, p, hf, null, null, t, true);
  hooks?.release('head');
  return result;
}
