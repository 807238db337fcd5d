import type { DecoderArchitecture } from '../architectures/model-architecture.js';
import { parametersOf } from '../architectures/parameters-of.js';
import { bytesPerElement } from '../dtype.js';
import { BadamOptionError } from '../errors.js';
import { numel } from '../parameters.js';
import { requireInteger } from '../validation.js';

/** The 16-bit or fp32 dtypes of a device Llama's weights and activations. */
export type LlamaStepDType = 'bfloat16' | 'float16' | 'float32';

/** One BAdam (or full) training step of a Llama on @badam/cuda's device, for {@link llamaStepMemory}. */
export interface LlamaStepWorkload {
  /** Sequences per micro-batch. */
  batchSize: number;
  /** Tokens per sequence. */
  seqLength: number;
  /** Weights and activations. */
  dtype: LlamaStepDType;
  /** Keep only each layer's input and recompute the layer in backward. */
  gradientCheckpointing: boolean;
  /** The parameters that train this step (the active block, active modules included), by name. */
  trainable: readonly string[];
  /** Positions with a next-token label. Default batchSize * (seqLength - 1): every position but each row's last. */
  labelledRows?: number;
  /** Some row is shorter than seqLength (the step then uploads the lengths, 4 bytes a row). Default false. */
  paddedRows?: boolean;
  /** Positions the model's fp32 RoPE tables cover. Default min(max_position_embeddings, 4096), DeviceLlama's. */
  maxPositions?: number;
  /** Rows of logits alive at once in the loss. Default max(64, floor(2^26 / vocab)), DeviceLlama's. */
  lossChunkTokens?: number;
  /**
   * Bytes the GEMM library's workspace holds all along (the CUDA device draws cuBLAS's from its allocator:
   * 32 MiB on Hopper and newer, 4 MiB before). Default 0, the CPU device's.
   */
  gemmWorkspaceBytes?: number;
  /**
   * The gradients exist when the step starts (gradient accumulation: the micro-batches after the first add
   * into them). Default false: a layer's gradients are allocated as its backward starts.
   */
  gradientsHeld?: boolean;
}

/** What {@link llamaStepMemory} computes, in bytes of the allocator's accounting (what is requested). */
export interface LlamaStepMemory {
  /** The most bytes in use at once, over the step and the optimizer update after it. */
  readonly peak: number;
  /**
   * Held across steps: all weights, the trainable parameters' fp32 masters (16-bit weights) and moments, and
   * the model's RoPE tables (fp32 cos and sin, [maxPositions, headDim / 2] each).
   */
  readonly held: {
    readonly weights: number;
    readonly masters: number;
    readonly optimizerState: number;
    readonly ropeTables: number;
  };
  /** The trainable parameters' gradient buffers: fp32, or the weight dtype for weight matrices. */
  readonly gradients: number;
  /** The most bytes in use in each phase: forward, loss (head and cross-entropy), backward, the update. */
  readonly phases: {
    readonly forward: number;
    readonly loss: number;
    readonly backward: number;
    readonly update: number;
  };
}

/** A tally of the bytes in use, with its peak, as the caching allocator keeps it. */
class Tally {
  inUse = 0;
  peak = 0;
  alloc(bytes: number): number {
    this.inUse += bytes;
    if (this.inUse > this.peak) this.peak = this.inUse;
    return bytes;
  }
  free(...bytes: number[]): void {
    for (const b of bytes) this.inUse -= b;
  }
  /** Allocates `bytes` and frees them at once (a kernel's workspace for one call). */
  transient(bytes: number): void {
    this.free(this.alloc(bytes));
  }
}

/** Rows per chunk and the most chunks of the GPU's column sums (@badam/cuda's llama_reference.h). */
const COLUMN_ROWS_PER_CHUNK = 64;
const MAX_COLUMN_CHUNKS = 64;
/** The dk / dv pass of the tensor-core attention backward aims for this many CTAs (llama_reference.h). */
const DKV_TARGET_CTAS = 256;

/** fp32 bytes of the column sums' workspace over rows x cols (RMSNorm's dWeight, dBias). */
function columnSumBytes(rows: number, cols: number): number {
  const chunks = Math.min(MAX_COLUMN_CHUNKS, Math.max(1, Math.ceil(rows / COLUMN_ROWS_PER_CHUNK)));
  return 4 * chunks * cols;
}

/** fp32 bytes of the split dk / dv partial sums of the tensor-core attention backward (0 when not split). */
function attentionPartialBytes(a: DecoderArchitecture, b: number, s: number, dtype: LlamaStepDType): number {
  const tensorCores = dtype !== 'float32' && (a.headDim === 64 || a.headDim === 128);
  const group = a.numHeads / a.numKeyValueHeads;
  const base = Math.ceil(s / 64) * a.numKeyValueHeads * b;
  let splits = group;
  for (let d = 1; d < group; d++) {
    if (group % d === 0 && base * d >= DKV_TARGET_CTAS) {
      splits = d;
      break;
    }
  }
  if (!tensorCores || splits <= 1) return 0;
  return 4 * 2 * splits * b * s * a.numKeyValueHeads * a.headDim;
}

/** The layer index of a parameter name, or undefined. */
function layerOf(name: string): number | undefined {
  const m = /^model\.layers\.(\d+)\./.exec(name);
  return m ? Number(m[1]) : undefined;
}

/**
 * The device memory of one training step of a Llama-family model on @badam/cuda (DeviceLlama's forward,
 * loss and backward, then CudaBlockBackend's update), to the byte of its caching allocator's accounting:
 * the held weights, masters and moments, the gradient buffers (allocated as each layer's backward starts),
 * and every activation, scratch buffer and kernel workspace the step allocates, in the order it allocates
 * and frees them. @badam/cuda's tests run the step on its CPU device, whose allocator accounts exactly as
 * the GPU's, and compare the measured peak with this one, byte for byte, on small and scaled configs; the
 * CUDA device adds only the GEMM workspace given here. `badam-estimate --device-memory` searches it.
 *
 * @example
 * ```ts
 * const arch = parseHfConfig(BUILTIN_CONFIGS['llama3-8b'].config) as DecoderArchitecture;
 * const layer0 = parametersOf(arch, 'bfloat16').filter((p) => p.name.startsWith('model.layers.0.')).map((p) => p.name);
 * llamaStepMemory(arch, { batchSize: 2, seqLength: 512, dtype: 'bfloat16', gradientCheckpointing: true,
 *   trainable: layer0, gemmWorkspaceBytes: 32 << 20 }).peak / 2 ** 30; // GiB
 * ```
 */
export function llamaStepMemory(
  architecture: DecoderArchitecture,
  workload: LlamaStepWorkload,
): LlamaStepMemory {
  const step = new StepSimulation(architecture, workload);
  step.run();
  return {
    peak: step.tally.peak,
    held: step.held,
    gradients: step.gradients,
    phases: step.phases,
  };
}

type LayerMode = 'inplace' | 'save' | 'checkpoint' | 'recompute';

/** The sizes of a step: tokens n (batch b x seq s), bytes per activation e, the layer's widths. */
interface LayerShapes {
  a: DecoderArchitecture;
  n: number;
  b: number;
  s: number;
  e: number;
  H: number;
  Q: number;
  KV: number;
  W3: number;
  I: number;
  dtype: LlamaStepDType;
}

/**
 * The step's allocations replayed on a {@link Tally}, phase by phase, in the order @badam/cuda's
 * llama-step.ts, llama-forward.ts, llama-head.ts and llama-backward.ts make them.
 */
class StepSimulation {
  readonly tally = new Tally();
  readonly held: LlamaStepMemory['held'];
  readonly gradients: number;
  readonly phases = { forward: 0, loss: 0, backward: 0, update: 0 };
  private readonly z: LayerShapes;
  private readonly trainable: ReadonlySet<string>;
  private readonly gradientBytes: (name: string) => number;
  private readonly gradientsLeft: Set<string>;
  private readonly lowest: number;
  private readonly embedTrains: boolean;

  constructor(
    private readonly a: DecoderArchitecture,
    private readonly w: LlamaStepWorkload,
  ) {
    const b = requireInteger('batchSize', w.batchSize, { min: 1 });
    const s = requireInteger('seqLength', w.seqLength, { min: 1 });
    const e = bytesPerElement(w.dtype);
    const Q = a.numHeads * a.headDim;
    const KV = a.numKeyValueHeads * a.headDim;
    this.z = {
      a,
      n: b * s,
      b,
      s,
      e,
      H: a.hiddenSize,
      Q,
      KV,
      W3: Q + 2 * KV,
      I: a.intermediateSize,
      dtype: w.dtype,
    };
    const parameters = parametersOf({ ...a, kind: 'decoder' }, w.dtype);
    const byName = new Map(parameters.map((p) => [p.name, p]));
    this.trainable = new Set(w.trainable);
    for (const name of this.trainable) {
      if (!byName.has(name))
        throw new BadamOptionError('trainable', name, 'a parameter name of the architecture');
    }
    // A parameter's gradient buffer: the weight dtype for weight matrices (not the embedding), else fp32.
    this.gradientBytes = (name) => {
      const p = byName.get(name)!;
      const matrix = p.shape.length === 2 && !name.startsWith('model.embed_tokens.');
      return numel(p.shape) * (matrix ? e : 4);
    };
    let masters = 0;
    let optimizerState = 0;
    let gradients = 0;
    for (const name of this.trainable) {
      const count = numel(byName.get(name)!.shape);
      if (w.dtype !== 'float32') masters += 4 * count;
      optimizerState += 8 * count;
      gradients += this.gradientBytes(name);
    }
    const positions = w.maxPositions ?? Math.min(a.maxPositionEmbeddings, 4096);
    this.held = {
      weights: parameters.reduce((sum, p) => sum + numel(p.shape) * e, 0),
      masters,
      optimizerState,
      ropeTables: 2 * 4 * positions * (a.headDim / 2),
    };
    this.gradients = gradients;
    this.gradientsLeft = new Set(w.gradientsHeld === true ? [] : this.trainable);
    this.embedTrains = this.trainable.has('model.embed_tokens.weight');
    let lowest = a.numLayers;
    for (const name of this.trainable) lowest = Math.min(lowest, layerOf(name) ?? a.numLayers);
    this.lowest = this.embedTrains ? 0 : lowest;
  }

  run(): void {
    const { held, tally: t, z, w } = this;
    t.alloc(
      held.weights + held.masters + held.optimizerState + held.ropeTables + (w.gemmWorkspaceBytes ?? 0),
    );
    if (w.gradientsHeld === true) t.alloc(this.gradients);
    t.alloc(4 * z.n + (w.paddedRows === true ? 4 * z.b : 0)); // the batch's ids (and lengths)
    const count = w.labelledRows ?? z.b * (z.s - 1);
    if (count > 0) {
      this.phase('forward', () => this.forward());
      const loss = this.phase('loss', () => this.loss(count));
      if (loss.dHf > 0) this.phase('backward', () => this.backward(loss));
    }
    // The update: a parameter no gradient reached gets a zero buffer for its AdamW step, one at a time.
    this.phase('update', () => {
      for (const name of this.gradientsLeft) t.transient(this.gradientBytes(name));
    });
  }

  /** Runs a phase, recording its own peak in `phases`. */
  private phase<T>(name: keyof StepSimulation['phases'], run: () => T): T {
    const t = this.tally;
    const before = t.peak;
    t.peak = t.inUse;
    const result = run();
    this.phases[name] = t.peak;
    t.peak = Math.max(before, t.peak);
    return result;
  }

  /** Allocates the gradient buffers of the names `select` picks that have none yet (the backend's first request). */
  private fetch(select: (name: string) => boolean): void {
    for (const name of [...this.gradientsLeft]) {
      if (!select(name)) continue;
      this.tally.alloc(this.gradientBytes(name));
      this.gradientsLeft.delete(name);
    }
  }

  /** The embedding's output, then each layer: in place below the lowest trainable one, kept from it up. */
  private forward(): void {
    const { z } = this;
    this.tally.alloc(z.e * z.n * z.H); // x = embed_tokens[ids]: layer `lowest`'s input when it is reached
    for (let l = 0; l < this.lowest; l++) this.layerForward('inplace');
    for (let l = this.lowest; l < this.a.numLayers; l++)
      this.layerForward(this.w.gradientCheckpointing ? 'checkpoint' : 'save');
  }

  /** One layerForward; returns the bytes it keeps (the activations, and the output). */
  private layerForward(mode: LayerMode): number {
    const { tally: t } = this;
    const { n, e, H, W3, Q, I } = this.z;
    const keep = mode === 'save' || mode === 'recompute';
    const kept: number[] = [];
    const scratch: number[] = [];
    const take = (bytes: number, keepIt: boolean) => (keepIt ? kept : scratch).push(t.alloc(bytes));
    take(e * n * H, false); // h
    take(4 * n, keep); // rstd1
    take(e * n * W3, keep); // qkv
    take(e * n * Q, keep); // attn
    take(this.lseBytes(), keep); // lse
    take(e * n * H, false); // ao
    if (mode !== 'inplace') take(e * n * H, keep); // x1
    take(4 * n, keep); // rstd2
    take(e * n * 2 * I, keep); // gate_up
    if (mode !== 'recompute') {
      take(e * n * I, false); // act
      if (mode !== 'inplace') take(e * n * H, true); // out
    }
    t.free(...scratch);
    return kept.reduce((x, y) => x + y, 0);
  }

  private lseBytes(): number {
    return 4 * this.z.b * this.a.numHeads * this.z.s;
  }

  /** The final norm, the head's gradient, d loss / d hf and the loss chunks; returns what backward frees. */
  private loss(count: number): { dHf: number; rstdF: number } {
    const { tally: t, a } = this;
    const { n, e, H } = this.z;
    const headName = a.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
    const needHiddenGrad =
      this.embedTrains || this.lowest < a.numLayers || this.trainable.has('model.norm.weight');
    const hf = t.alloc(e * n * H);
    const rstdF = t.alloc(4 * n);
    this.fetch((name) => name === headName);
    const dHf = needHiddenGrad ? t.alloc(4 * n * H) : 0;
    const chunkRows = this.w.lossChunkTokens ?? Math.max(64, Math.floor(2 ** 26 / a.vocabSize));
    for (let start = 0; start < count; start += chunkRows) {
      const c = Math.min(chunkRows, count - start);
      const chunk = [
        t.alloc(4 * c),
        t.alloc(4 * c),
        t.alloc(e * c * H),
        t.alloc(e * c * a.vocabSize),
        t.alloc(4 * c),
      ];
      if (dHf > 0) chunk.push(t.alloc(4 * c * H)); // dHc
      t.free(...chunk);
    }
    t.free(hf);
    return { dHf, rstdF };
  }

  /** The final norm's backward into g, then each trainable layer from the top; the embedding's gradient. */
  private backward({ dHf, rstdF }: { dHf: number; rstdF: number }): void {
    const { tally: t, a, z } = this;
    const { n, e, H } = z;
    const dHfAct = this.w.dtype !== 'float32' ? t.alloc(e * n * H) : 0;
    t.alloc(e * n * H); // g
    this.fetch((name) => name === 'model.norm.weight');
    if (this.trainable.has('model.norm.weight')) t.transient(columnSumBytes(n, H));
    t.free(dHf, rstdF, dHfAct, e * n * H); // and x_L, the last layer's output
    const layerActs =
      4 * n + e * n * z.W3 + e * n * z.Q + this.lseBytes() + e * n * H + 4 * n + e * n * 2 * z.I;
    for (let l = a.numLayers - 1; l >= this.lowest; l--) {
      const prefix = `model.layers.${l}.`;
      this.fetch((name) => name.startsWith(prefix));
      const acts = this.w.gradientCheckpointing ? this.layerForward('recompute') : layerActs;
      layerBackward(t, z, prefix, (name) => this.trainable.has(name), l > this.lowest || this.embedTrains);
      t.free(acts, e * n * H); // the activations and the layer's input
    }
    this.fetch((name) => name === 'model.embed_tokens.weight');
  }
}

/** One layerBackward's allocations (@badam/cuda's llama-backward.ts, in its order). */
function layerBackward(
  t: Tally,
  z: LayerShapes,
  prefix: string,
  has: (name: string) => boolean,
  needInputGrad: boolean,
): void {
  const { n, e, H, Q, KV, W3, I } = z;
  const trains = (linear: string) => has(`${prefix}${linear}.weight`) || has(`${prefix}${linear}.bias`);
  const biasGrad = (linear: string, channels: number) => {
    if (has(`${prefix}${linear}.bias`)) t.transient(columnSumBytes(n, channels));
  };
  const inputNorm = has(`${prefix}input_layernorm.weight`);
  const qkvTrain = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'].some(trains);
  const scope: number[] = [];
  scope.push(t.alloc(e * n * H)); // h2
  const dAct = t.alloc(e * n * I);
  if (trains('mlp.down_proj')) biasGrad('mlp.down_proj', H);
  t.free(dAct);
  biasGrad('mlp.gate_proj', I);
  biasGrad('mlp.up_proj', I);
  scope.push(t.alloc(e * n * H)); // dh
  if (has(`${prefix}post_attention_layernorm.weight`)) t.transient(columnSumBytes(n, H));
  biasGrad('self_attn.o_proj', H);
  if (needInputGrad || inputNorm || qkvTrain) {
    scope.push(t.alloc(e * n * Q)); // dAttn
    scope.push(t.alloc(e * n * W3)); // dqkv
    const dRows = t.alloc(4 * z.b * z.a.numHeads * z.s);
    t.transient(attentionPartialBytes(z.a, z.b, z.s, z.dtype));
    t.free(dRows);
    if (qkvTrain) {
      biasGrad('self_attn.q_proj', Q);
      biasGrad('self_attn.k_proj', KV);
      biasGrad('self_attn.v_proj', KV);
    }
    if ((needInputGrad || inputNorm) && inputNorm) t.transient(columnSumBytes(n, H));
  }
  t.free(...scope);
}
