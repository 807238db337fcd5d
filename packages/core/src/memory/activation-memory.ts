import type { ModelArchitecture } from '../architectures/model-architecture.js';
import { bytesPerElement, type DType } from '../dtype.js';
import { requireInteger } from '../validation.js';

/** Workload of {@link estimateActivationBytes}. */
export interface ActivationWorkload {
  /** Sequences per micro-batch. */
  batchSize: number;
  /** Tokens per sequence. */
  seqLength: number;
  /** Dtype of the activations (the compute dtype: bfloat16 in mixed precision, float32 on tfjs). */
  dtype: DType;
  /** Per-layer gradient checkpointing: keep only each layer's input and recompute the rest in backward. */
  gradientCheckpointing?: boolean;
  /** Attention kernel: `flash` keeps no seq x seq matrix; `eager` keeps the softmax probabilities. Default `flash`. */
  attention?: 'flash' | 'eager';
}

/**
 * Estimated bytes of activations kept for backward in one training micro-batch, the worst case over BAdam's
 * blocks (the lowest block active, so every layer above it keeps activations; with a higher block only
 * the layers from it upward do, and full Adam always has the worst case).
 *
 * Per token and layer, decoders keep about `5h + (a + 2 kv) d + 4i` elements (the two norm inputs, the
 * projections' inputs, q / k / v after RoPE, the attention output, gate, up, act(gate) and their product),
 * plus `a * s` softmax probabilities with eager attention; encoders follow Korthikanti et al. (2022),
 * `18h + 4i + 5 a s` bytes at 16 bit (`34h + 5 a s` for i = 4h), the `5 a s` only with eager attention. With checkpointing a layer keeps only its input (h), plus one layer's full
 * set during recomputation. The LM head adds fp32 logits and their log-softmax (8 V bytes per token).
 * It is an estimate for planning, not a measurement: backends report what they really hold.
 */
export function estimateActivationBytes(
  architecture: ModelArchitecture,
  workload: ActivationWorkload,
): number {
  const b = requireInteger('batchSize', workload.batchSize, { min: 1 });
  const s = requireInteger('seqLength', workload.seqLength, { min: 1 });
  const e = bytesPerElement(workload.dtype);
  const checkpointing = workload.gradientCheckpointing ?? false;
  const eager = (workload.attention ?? 'flash') === 'eager';
  const tokens = b * s;
  const h = architecture.hiddenSize;
  const i = architecture.intermediateSize;
  const L = architecture.numLayers;

  let perLayerPerToken: number;
  let headPerToken: number;
  if (architecture.kind === 'decoder') {
    const a = architecture.numHeads;
    const d = architecture.headDim;
    const kv = architecture.numKeyValueHeads;
    perLayerPerToken = e * (5 * h + (a + 2 * kv) * d + 4 * i) + (eager ? e * a * s : 4 * a);
    headPerToken = e * h + 8 * architecture.vocabSize;
  } else {
    const a = architecture.numHeads;
    perLayerPerToken = (e / 2) * (18 * h + 4 * i + (eager ? 5 * a * s : 0));
    headPerToken = e * h + (architecture.head === 'masked-lm' ? 8 * architecture.vocabSize : 0);
  }
  const embeddingPerToken = e * h;
  const layers = checkpointing ? L * e * h + perLayerPerToken : L * perLayerPerToken;
  return tokens * (embeddingPerToken + layers + headPerToken);
}
