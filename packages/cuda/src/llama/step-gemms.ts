import type { LlamaConfig } from '@badam/core';
import type { TensorDType } from '../addon.js';
import type { GemmShape } from '../device.js';
import { gradientDtypesOf } from './llama-gradients.js';
import { layerSizes } from './llama-net.js';
import { layerOf } from './llama-step.js';

/** One GEMM of a DeviceLlama step: what it computes, its shape and the dtypes of A / B and of C. */
export interface StepGemm {
  readonly label: string;
  readonly shape: GemmShape;
  readonly ab: TensorDType;
  readonly c: TensorDType;
}

/** What {@link llamaStepGemms} lists the GEMMs of. */
export interface StepGemmWorkload {
  batchSize: number;
  seqLength: number;
  dtype: 'bfloat16' | 'float16' | 'float32';
  gradientCheckpointing: boolean;
  /** The trainable parameter names (the active block). */
  trainable: readonly string[];
  /** Labelled positions. Default batchSize * (seqLength - 1). */
  labelledRows?: number;
  /** Default max(64, floor(2^26 / vocab)), DeviceLlama's. */
  lossChunkTokens?: number;
}

/**
 * Every GEMM one DeviceLlama.lossAndGradients call issues, in order, with the exact shapes, transposes,
 * leading dimensions and dtypes (the fused q / k / v and gate / up projections, the loss chunks, the
 * gradients into their buffers' dtypes): what the device check times for the 8B and TinyLlama steps. A test
 * records a real step's GEMMs on the CPU device and compares them with this list.
 */
export function llamaStepGemms(config: LlamaConfig, w: StepGemmWorkload): StepGemm[] {
  const { H, Q, KV, W3, I } = layerSizes(config);
  const V = config.vocabSize;
  const L = config.numLayers;
  const n = w.batchSize * w.seqLength;
  const dt = w.dtype;
  const trainable = new Set(w.trainable);
  const gradDtype = (name: string): TensorDType => {
    const shape =
      name.endsWith('.weight') && (name.includes('_proj') || name === 'lm_head.weight') ? [2, 2] : [2];
    return gradientDtypesOf(name, name.startsWith('model.embed_tokens.') ? [V, H] : shape, dt)[0]!;
  };
  const out: StepGemm[] = [];
  const gemm = (label: string, shape: GemmShape, c: TensorDType = dt) =>
    out.push({ label, shape, ab: dt, c });
  const embedTrains = trainable.has('model.embed_tokens.weight');
  let lowest = L;
  for (const name of trainable) lowest = Math.min(lowest, layerOf(name) ?? L);
  if (embedTrains) lowest = 0;
  const headName = config.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
  const needHiddenGrad = embedTrains || lowest < L || trainable.has('model.norm.weight');
  const count = w.labelledRows ?? w.batchSize * (w.seqLength - 1);
  if (count === 0) return out;
  const layerForward = (recompute: boolean) => {
    gemm('q | k | v = h [Wq; Wk; Wv]^T', { m: n, n: W3, k: H, transB: true });
    gemm('o = attn Wo^T', { m: n, n: H, k: Q, transB: true });
    gemm('gate | up = h2 [Wg; Wu]^T', { m: n, n: 2 * I, k: H, transB: true });
    if (!recompute) gemm('down = act Wd^T', { m: n, n: H, k: I, transB: true });
  };
  for (let l = 0; l < L; l++) layerForward(false);
  // The loss chunks.
  const chunk = w.lossChunkTokens ?? Math.max(64, Math.floor(2 ** 26 / V));
  const headTrains = trainable.has(headName);
  for (let start = 0; start < count; start += chunk) {
    const c = Math.min(chunk, count - start);
    gemm('logits = hc W_head^T', { m: c, n: V, k: H, transB: true });
    if (!needHiddenGrad && !headTrains) continue;
    if (headTrains)
      gemm(
        'dW_head += dLogits^T hc',
        { m: V, n: H, k: c, transA: true, alpha: 1 / count, beta: 1 },
        gradDtype(headName),
      );
    if (needHiddenGrad) gemm('dHc = dLogits W_head', { m: c, n: H, k: V, alpha: 1 / count }, 'float32');
  }
  if (!needHiddenGrad) return out;
  for (let l = L - 1; l >= lowest; l--) {
    const p = `model.layers.${l}.`;
    const trains = (linear: string) => trainable.has(`${p}${linear}.weight`);
    const weightGrad = (linear: string, label: string, shape: GemmShape) => {
      if (trains(linear)) gemm(label, { ...shape, transA: true, beta: 1 }, gradDtype(`${p}${linear}.weight`));
    };
    if (w.gradientCheckpointing) layerForward(true);
    weightGrad('mlp.down_proj', 'dWd += g^T act', { m: H, n: I, k: n });
    gemm('dAct = g Wd', { m: n, n: I, k: H });
    weightGrad('mlp.gate_proj', 'dWg += dGate^T h2 (a column block)', { m: I, n: H, k: n, lda: 2 * I });
    weightGrad('mlp.up_proj', 'dWu += dUp^T h2 (a column block)', { m: I, n: H, k: n, lda: 2 * I });
    gemm('dh2 = dGate | dUp [Wg; Wu]', { m: n, n: H, k: 2 * I });
    weightGrad('self_attn.o_proj', 'dWo += g^T attn', { m: H, n: Q, k: n });
    const inputNorm = trainable.has(`${p}input_layernorm.weight`);
    const qkvTrain = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'].some(
      (linear) => trains(linear) || trainable.has(`${p}${linear}.bias`),
    );
    const needInputGrad = l > lowest || embedTrains;
    if (!needInputGrad && !inputNorm && !qkvTrain) continue;
    gemm('dAttn = g Wo', { m: n, n: Q, k: H });
    weightGrad('self_attn.q_proj', 'dWq += dq^T h (a column block)', { m: Q, n: H, k: n, lda: W3 });
    weightGrad('self_attn.k_proj', 'dWk += dk^T h (a column block)', { m: KV, n: H, k: n, lda: W3 });
    weightGrad('self_attn.v_proj', 'dWv += dv^T h (a column block)', { m: KV, n: H, k: n, lda: W3 });
    if (needInputGrad || inputNorm) gemm('dh = dq | dk | dv [Wq; Wk; Wv]', { m: n, n: H, k: W3 });
  }
  return out;
}
