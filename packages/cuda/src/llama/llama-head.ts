import type { DeviceTensor } from '../device-tensor.js';
import type { PreparedBatch } from './llama-batch.js';
import type { LlamaNet } from './llama-net.js';
import type { StepTensors } from './step-tensors.js';

/**
 * The LM head and cross-entropy over the labelled rows only, `lossChunkTokens` rows at a time:
 * hc [c, H] = hf[rows] (a row gather), logits [c, V] = hc W^T, crossEntropy turns them into dLogits in
 * place, then dW += dLogits^T hc / count and dHf[rows] += dLogits W / count. `evalOnly`: loss and
 * argmax, no gradient. A chunk allocates, in this order, and frees before the next (packages/core's Llama
 * step memory model follows it): rows, labels int32 [c], hc [c, H], logits [c, V], (evalOnly: the argmax
 * int32 [c], freed at once), losses fp32 [c], then (with dHf) dHc fp32 [c, H].
 */
export function headChunks(
  net: LlamaNet,
  p: PreparedBatch,
  hf: DeviceTensor,
  dHf: DeviceTensor | null,
  headGrad: DeviceTensor | null,
  t: StepTensors,
  evalOnly: boolean,
): { lossSum: number; correct: number } {
  const H = net.config.hiddenSize;
  const V = net.config.vocabSize;
  const W = net.lmHead ?? net.embed;
  const count = p.rows.length;
  // dLogits are left unscaled (softmax - onehot, in [-1, 1]) and the mean's 1 / count is the GEMMs' alpha,
  // applied in fp32: scaled first, fp16 dLogits of small probabilities would underflow to 0.
  const gradScale = evalOnly || (dHf === null && headGrad === null) ? 0 : 1;
  const alpha = 1 / count;
  let lossSum = 0;
  let correct = 0;
  for (let start = 0; start < count; start += net.lossChunkTokens) {
    const c = Math.min(net.lossChunkTokens, count - start);
    t.scope(() => {
      const rows = t.alloc([c], 'int32', 'workspace').write(p.rows.subarray(start, start + c));
      const labels = t.alloc([c], 'int32', 'workspace').write(p.rowLabels.subarray(start, start + c));
      // hc [c, H] = hf[rows]
      const hc = t.alloc([c, H], net.dtype, 'workspace');
      net.device.embedding(hf, rows, hc);
      // logits [c, V] = hc W^T
      const logits = t.alloc([c, V], net.dtype, 'workspace');
      net.device.gemm(hc, W, logits, { m: c, n: V, k: H, transB: true });
      if (evalOnly) {
        const best = t.alloc([c], 'int32', 'workspace');
        net.device.argmaxRows(logits, best);
        const predicted = best.readRaw() as Int32Array;
        for (let i = 0; i < c; i++) if (predicted[i] === p.rowLabels[start + i]) correct++;
        t.release(best);
      }
      // losses [c]; logits -> dLogits in place
      const losses = t.alloc([c], 'float32', 'workspace');
      net.device.crossEntropy(logits, labels, losses, gradScale);
      lossSum += net.device.sum(losses);
      if (gradScale === 0) return;
      // dW [V, H] += dLogits^T hc / count (into fp32 or the weight's dtype)
      if (headGrad) net.device.gemm(logits, hc, headGrad, { m: V, n: H, k: c, transA: true, alpha, beta: 1 });
      if (dHf) {
        // dHc [c, H] = dLogits W / count (fp32); dHf[rows] += dHc
        const dHc = t.alloc([c, H], 'float32', 'workspace');
        net.device.gemm(logits, W, dHc, { m: c, n: H, k: V, alpha });
        net.device.embeddingBackward(dHc, rows, dHf);
      }
    });
  }
  return { lossSum, correct };
}
