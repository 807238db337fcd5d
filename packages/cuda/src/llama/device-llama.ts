import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  BadamOptionError,
  isFiniteArray,
  type LlamaConfig,
  llamaConfigFromHf,
  llamaConfigToHf,
  type NamedArray,
  ropeInverseFrequencies,
  ropeTables,
} from '@badam/core';
import {
  INDEX_FILE,
  regularFileProblem,
  SafetensorsModel,
  SINGLE_FILE,
  writeFileAtomic,
  writeSafetensors,
} from '@badam/safetensors';
import type { AllocationKind, TensorDType } from '../addon.js';
import type { CudaParameter } from '../cuda-block-backend.js';
import type { Device } from '../device.js';
import type { DeviceTensor } from '../device-tensor.js';
import { type LlamaAttentionDims, type LlamaOps, llamaOpsOf } from './llama-ops.js';
import { forEachInitialLlamaParameter, llamaParameterSpecs } from './llama-parameters.js';

/** One micro-batch of token ids and labels, right-padded rows of `seqLen` tokens. */
export interface DeviceLlamaBatch {
  batchSize: number;
  seqLen: number;
  /** [batchSize * seqLen] token ids. */
  inputIds: Int32Array;
  /** [batchSize * seqLen], unshifted like Hugging Face (position s predicts labels[s + 1]); -100 = ignored. */
  labels: Int32Array;
  /** [batchSize] tokens before right padding (keys at >= length are masked). Default seqLen. */
  lengths?: Int32Array;
}

/** The floating-point dtypes of a {@link DeviceLlama}'s weights and activations. */
export type DeviceLlamaDType = 'bfloat16' | 'float16' | 'float32';

/** Options of a {@link DeviceLlama}. */
export interface DeviceLlamaOptions {
  /** Weights AND activations. Default bfloat16. */
  dtype?: DeviceLlamaDType;
  /** Keep only each layer's input for backward and recompute the layer there. Default false. */
  gradientCheckpointing?: boolean;
  /** Longest sequence the RoPE tables cover. Default min(max_position_embeddings, 4096). */
  maxPositions?: number;
  /**
   * Rows of logits alive at once in the loss (only labelled positions get logits at all). Default
   * 2^26 / vocab (64 Mi logits, 128 MiB in bf16), at least 64.
   */
  lossChunkTokens?: number;
}

/** What {@link DeviceLlama.lossAndGradients} returns. */
export interface DeviceLlamaLoss {
  /** Hugging Face's loss: mean cross-entropy over the labelled next-token positions of the micro-batch. */
  loss: number;
  /** Real (not padding) tokens of the micro-batch: the sum of lengths. */
  tokens: number;
  /** Positions with a next-token label (the loss's denominator). */
  labelTokens: number;
}

/** What {@link DeviceLlama.evaluate} returns. */
export interface DeviceLlamaEvaluation {
  loss: number;
  labelTokens: number;
  /** Labelled positions whose argmax logit is the label. */
  correct: number;
  /** Labelled positions counted for accuracy (= labelTokens). */
  counted: number;
}

const IGNORE_INDEX = -100;

interface Linear {
  readonly name: string;
  readonly weight: DeviceTensor;
  readonly bias: DeviceTensor | null;
}

interface Layer {
  readonly index: number;
  readonly q: Linear;
  readonly k: Linear;
  readonly v: Linear;
  readonly o: Linear;
  readonly gate: Linear;
  readonly up: Linear;
  readonly down: Linear;
  readonly inputNorm: DeviceTensor;
  readonly postNorm: DeviceTensor;
  readonly inputNormName: string;
  readonly postNormName: string;
}

/** What backward needs of one layer (h, h2 and silu(gate) * up are recomputed: one cheap op each). */
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
type SavedLayer = { kind: 'all'; acts: LayerActivations } | { kind: 'input'; x: DeviceTensor };

/**
 * Every tensor one step allocates, by name for reusable scratch ('workspace') and in a list for the rest,
 * so that the step frees all of it before it returns, also when it throws.
 */
class StepTensors {
  private readonly scratch = new Map<string, DeviceTensor>();
  private readonly owned = new Set<DeviceTensor>();

  constructor(private readonly device: Device) {}

  /** A fresh tensor of `kind` owned by the step (free it early with {@link release}). */
  alloc(shape: readonly number[], dtype: TensorDType, kind: AllocationKind): DeviceTensor {
    const t = this.device.empty(shape, dtype, kind);
    this.owned.add(t);
    return t;
  }

  /** The step's scratch buffer `name` (kind 'workspace'), allocated on first use and reused after. */
  scratchOf(name: string, shape: readonly number[], dtype: TensorDType): DeviceTensor {
    let t = this.scratch.get(name);
    if (t !== undefined && (t.dtype !== dtype || t.shape.join() !== shape.join())) {
      t.free();
      t = undefined;
    }
    if (t === undefined) {
      t = this.device.empty(shape, dtype, 'workspace');
      this.scratch.set(name, t);
    }
    return t;
  }

  /** Frees every scratch buffer now (the next {@link scratchOf} allocates afresh). */
  releaseScratch(): void {
    for (const t of this.scratch.values()) t.free();
    this.scratch.clear();
  }

  release(...tensors: DeviceTensor[]): void {
    for (const t of tensors) {
      if (this.owned.delete(t)) t.free();
    }
  }

  freeAll(): void {
    for (const t of this.owned) t.free();
    for (const t of this.scratch.values()) t.free();
    this.owned.clear();
    this.scratch.clear();
  }
}

/** The host-side facts of a validated batch. */
interface PreparedBatch {
  readonly b: number;
  readonly s: number;
  readonly n: number;
  readonly tokens: number;
  /** Token rows n (= b * S + s) that predict a label, and the label they predict (labels[n + 1]). */
  readonly rows: Int32Array;
  readonly rowLabels: Int32Array;
  readonly ids: DeviceTensor;
  readonly lengths: DeviceTensor | null;
}

/**
 * A Llama-family causal LM (Llama 2/3, Mistral, Qwen2, TinyLlama) on a {@link Device}, written like llm.c: a
 * forward and a backward you can read top to bottom, on issue 12's ops (flash attention with GQA, RMSNorm,
 * RoPE, SwiGLU, chunked cross-entropy) and cuBLAS GEMMs, in bf16 (or fp16 / fp32) weights and activations.
 *
 * Built for BAdam: {@link lossAndGradients} computes weight gradients only for the trainable parameters
 * (adding them into the fp32 buffers of CudaBlockBackend), runs the layers below the lowest trainable one
 * forward without keeping anything, and stops backward there. The [tokens, vocab] logits never exist at
 * once: only labelled positions get logits, `lossChunkTokens` rows at a time.
 *
 * Ownership: the model owns its weight tensors and {@link dispose} frees them. {@link parameters} hands the
 * same tensors to a CudaBlockBackend, which updates them in place; its `dispose()` frees them too
 * (freeing twice is harmless), and after either the model is unusable.
 *
 * @example
 * ```ts
 * const device = Device.cpu(); // Device.cuda() on a GPU
 * const model = DeviceLlama.create(device, llamaConfigFromHf(configJson), { dtype: 'float32', seed: 0 });
 * const backend = new CudaBlockBackend(device, model.parameters());
 * const optimizer = new BlockOptimizer({ baseOptimizer: { type: 'adamw', learningRate: 1e-4 },
 *   namedParameters: model.parameters(), switchBlockEvery: 10 }, backend);
 * const { loss } = model.lossAndGradients(batch, backend.trainableNames, (name) => backend.gradientOf(name));
 * optimizer.step();
 * ```
 */
export class DeviceLlama {
  readonly dtype: DeviceLlamaDType;
  readonly maxPositions: number;
  readonly gradientCheckpointing: boolean;
  readonly lossChunkTokens: number;
  private readonly ops: LlamaOps;
  private readonly weights: Map<string, DeviceTensor>;
  private readonly layers: Layer[];
  private readonly embed: DeviceTensor;
  private readonly norm: DeviceTensor;
  private readonly lmHead: DeviceTensor | null;
  private readonly cos: DeviceTensor;
  private readonly sin: DeviceTensor;
  private disposed = false;

  private constructor(
    readonly device: Device,
    readonly config: LlamaConfig,
    weights: Map<string, DeviceTensor>,
    options: DeviceLlamaOptions,
  ) {
    this.dtype = options.dtype ?? 'bfloat16';
    this.gradientCheckpointing = options.gradientCheckpointing ?? false;
    this.maxPositions = options.maxPositions ?? Math.min(config.maxPositionEmbeddings, 4096);
    this.lossChunkTokens = options.lossChunkTokens ?? Math.max(64, Math.floor(2 ** 26 / config.vocabSize));
    this.ops = llamaOpsOf(device);
    this.weights = weights;
    const w = (name: string) => weights.get(name)!;
    const linear = (name: string): Linear => ({
      name,
      weight: w(`${name}.weight`),
      bias: weights.get(`${name}.bias`) ?? null,
    });
    this.embed = w('model.embed_tokens.weight');
    this.layers = Array.from({ length: config.numLayers }, (_, index) => {
      const p = `model.layers.${index}`;
      return {
        index,
        q: linear(`${p}.self_attn.q_proj`),
        k: linear(`${p}.self_attn.k_proj`),
        v: linear(`${p}.self_attn.v_proj`),
        o: linear(`${p}.self_attn.o_proj`),
        gate: linear(`${p}.mlp.gate_proj`),
        up: linear(`${p}.mlp.up_proj`),
        down: linear(`${p}.mlp.down_proj`),
        inputNorm: w(`${p}.input_layernorm.weight`),
        postNorm: w(`${p}.post_attention_layernorm.weight`),
        inputNormName: `${p}.input_layernorm.weight`,
        postNormName: `${p}.post_attention_layernorm.weight`,
      };
    });
    this.norm = w('model.norm.weight');
    this.lmHead = config.tieWordEmbeddings ? null : w('lm_head.weight');
    const half = config.headDim / 2;
    const tables = ropeTables(
      this.maxPositions,
      ropeInverseFrequencies(config.headDim, config.ropeTheta, config.ropeScaling),
    );
    this.cos = device.tensor(tables.cos, [this.maxPositions, half], 'float32', 'other');
    this.sin = device.tensor(tables.sin, [this.maxPositions, half], 'float32', 'other');
  }

  /**
   * A randomly initialised model: the same weights as @badam/models' `LlamaForCausalLM` for the same seed
   * (same generator, same draw order), rounded to `dtype`. One parameter is on the host at a time.
   */
  static create(
    device: Device,
    config: LlamaConfig,
    options: DeviceLlamaOptions & { seed?: number; initializerRange?: number } = {},
  ): DeviceLlama {
    const dtype = checkOptions(config, options);
    const weights = new Map<string, DeviceTensor>();
    try {
      forEachInitialLlamaParameter(config, options, (spec, values) => {
        weights.set(spec.name, device.tensor(values, spec.shape, dtype, 'weights'));
      });
      return new DeviceLlama(device, config, weights, { ...options, dtype });
    } catch (error) {
      for (const t of weights.values()) t.free();
      throw error;
    }
  }

  /**
   * A model from named arrays (fp32 values, or 16-bit bits with dtype 'bfloat16' / 'float16'), converted
   * to `options.dtype` on the device. Every parameter must be there with its shape; a tied model's
   * `lm_head.weight` and other extra names (e.g. `rotary_emb.inv_freq`) are ignored.
   */
  static fromNamedArrays(
    device: Device,
    config: LlamaConfig,
    arrays: readonly NamedArray[],
    options: DeviceLlamaOptions = {},
  ): DeviceLlama {
    const dtype = checkOptions(config, options);
    const byName = new Map(arrays.map((a) => [a.name, a]));
    const weights = new Map<string, DeviceTensor>();
    try {
      for (const spec of llamaParameterSpecs(config)) {
        const array = byName.get(spec.name);
        if (array === undefined)
          throw new BadamOptionError(
            'arrays',
            `no ${JSON.stringify(spec.name)}`,
            `every parameter of the config (missing ${spec.name} [${spec.shape.join(', ')}])`,
          );
        checkShape(spec.name, array.shape, spec.shape, 'arrays');
        if (array.dtype !== 'float32' && array.dtype !== 'bfloat16' && array.dtype !== 'float16')
          throw new BadamOptionError(
            `arrays ${spec.name} dtype`,
            array.dtype,
            'float32, bfloat16 or float16',
          );
        weights.set(
          spec.name,
          uploadAs(device, array.data as Float32Array | Uint16Array, spec.shape, array.dtype, dtype),
        );
      }
      return new DeviceLlama(device, config, weights, { ...options, dtype });
    } catch (error) {
      for (const t of weights.values()) t.free();
      throw error;
    }
  }

  /**
   * Loads a local Hugging Face directory: config.json and `model.safetensors` or sharded weights with
   * `model.safetensors.index.json`. Each tensor's bytes go straight to the device in the stored dtype —
   * no fp32 copy on the host — and are cast there when the stored dtype is not `options.dtype`.
   *
   * @example
   * ```ts
   * const model = await DeviceLlama.fromPretrained(Device.cuda(), './Llama-3.2-1B', { dtype: 'bfloat16' });
   * ```
   */
  static async fromPretrained(
    device: Device,
    directory: string,
    options: DeviceLlamaOptions = {},
  ): Promise<DeviceLlama> {
    const configPath = join(directory, 'config.json');
    let json: unknown;
    try {
      const problem = await regularFileProblem(configPath);
      if (problem !== undefined) throw new Error(problem);
      json = JSON.parse((await readFile(configPath, 'utf8')).replace(/^\uFEFF/, ''));
    } catch (error) {
      throw new BadamOptionError(
        'model directory',
        directory,
        'a Hugging Face model folder with a readable config.json',
        `${configPath}: ${(error as Error).message}`,
      );
    }
    const config = llamaConfigFromHf(json, configPath);
    const dtype = checkOptions(config, options);
    const file = await SafetensorsModel.open(directory);
    const weights = new Map<string, DeviceTensor>();
    try {
      for (const spec of llamaParameterSpecs(config)) {
        if (!file.has(spec.name))
          throw new BadamOptionError(
            `${directory} weights`,
            `no tensor ${JSON.stringify(spec.name)}`,
            `every tensor config.json's architecture needs (${spec.name} [${spec.shape.join(', ')}])`,
          );
        checkShape(spec.name, file.shapeOf(spec.name), spec.shape, directory);
        const stored = await file.read(spec.name);
        if (stored.dtype !== 'float32' && stored.dtype !== 'bfloat16' && stored.dtype !== 'float16')
          throw new BadamOptionError(`${directory} ${spec.name} dtype`, stored.dtype, 'F32, BF16 or F16');
        // One NaN trained on makes every checkpoint of the run unsavable: refuse it here, by name.
        if (!isFiniteArray(stored))
          throw new BadamOptionError(
            `${directory} ${spec.name}`,
            'NaN or infinity',
            'finite weights',
            'the weights are damaged or were saved from a diverged run; use a good copy of the model',
          );
        weights.set(
          spec.name,
          uploadAs(device, stored.data as Float32Array | Uint16Array, spec.shape, stored.dtype, dtype),
        );
      }
      return new DeviceLlama(device, config, weights, { ...options, dtype });
    } catch (error) {
      for (const t of weights.values()) t.free();
      throw error;
    } finally {
      await file.close();
    }
  }

  /**
   * The parameters in Hugging Face `named_parameters()` order (LlamaForCausalLM.namedParameters' names;
   * tied `lm_head` not listed), whose values are the model's own weight tensors, for
   * `new CudaBlockBackend(device, model.parameters())` to take over: the backend's AdamW updates them in
   * place and the model sees the new values at once.
   */
  parameters(): CudaParameter[] {
    this.live();
    return [...this.weights].map(([name, w]) => ({
      name,
      shape: [...w.shape],
      dtype: this.dtype,
      values: w,
    }));
  }

  /**
   * Forward and backward of one micro-batch: returns Hugging Face's loss and ADDS (+=) d loss / d p into
   * `gradientOf(p)` (an fp32 buffer of p's size, e.g. CudaBlockBackend.gradientOf) for every p in
   * `trainable`, and for no other parameter. Layers below the lowest trainable one run forward only,
   * keeping nothing; backward stops at it.
   */
  lossAndGradients(
    batch: DeviceLlamaBatch,
    trainable: readonly string[],
    gradientOf: (name: string) => DeviceTensor,
  ): DeviceLlamaLoss {
    this.live();
    const grads = this.gradientBuffers(trainable, gradientOf);
    const t = new StepTensors(this.device);
    try {
      const prepared = this.prepare(batch, t);
      const result = this.trainStep(prepared, grads, t);
      return { loss: result, tokens: prepared.tokens, labelTokens: prepared.rows.length };
    } finally {
      t.freeAll();
    }
  }

  /** Loss and next-token accuracy (argmax at s against labels[s + 1]) without gradients or kept activations. */
  evaluate(batch: DeviceLlamaBatch): DeviceLlamaEvaluation {
    this.live();
    const t = new StepTensors(this.device);
    try {
      const p = this.prepare(batch, t);
      const { n } = p;
      const H = this.config.hiddenSize;
      // x [N, H] = embed[ids]; every layer in place; hf [N, H] = norm(x)
      const x = t.alloc([n, H], this.dtype, 'activations');
      this.ops.embedding(this.embed, p.ids, x);
      for (const layer of this.layers) this.layerForward(layer, x, p, t, 'inplace');
      const hf = t.scratchOf('h', [n, H], this.dtype);
      this.ops.rmsNorm(x, this.norm, hf, t.scratchOf('rstd1', [n], 'float32'), this.config.rmsNormEps);
      const { lossSum, correct } = this.headChunks(p, hf, null, null, t, true);
      const count = p.rows.length;
      return { loss: count > 0 ? lossSum / count : 0, labelTokens: count, correct, counted: count };
    } finally {
      t.freeAll();
    }
  }

  /** Every weight as fp32 values (16-bit values widened exactly), in model order — as CudaBlockBackend.readWeights. */
  readWeights(): NamedArray[] {
    this.live();
    return [...this.weights].map(([name, w]) => ({
      name,
      dtype: 'float32',
      shape: [...w.shape],
      data: w.read(),
    }));
  }

  /**
   * Saves in Hugging Face's format, in the model's dtype (bf16 bits as they are): config.json (with
   * `torch_dtype`) and model.safetensors, or `model-0000x-of-0000y.safetensors` shards and
   * model.safetensors.index.json past `maxShardBytes` (default 5 GiB, as Hugging Face). Every file is
   * written atomically, the index last. Weights are read from the device one shard at a time, so the host
   * holds at most one shard. A tied model writes no `lm_head.weight`.
   */
  async save(directory: string, options: { maxShardBytes?: number } = {}): Promise<void> {
    this.live();
    const maxShardBytes = options.maxShardBytes ?? 5 * 1024 ** 3;
    if (!(maxShardBytes > 0)) throw new BadamOptionError('maxShardBytes', maxShardBytes, 'a positive number');
    // The same packing as @badam/safetensors' writeSafetensorsModel: in model order, a new shard when full.
    const shards: Array<Array<[string, DeviceTensor]>> = [[]];
    let current = 0;
    for (const entry of this.weights) {
      const bytes = entry[1].bytes;
      if (current > 0 && current + bytes > maxShardBytes) {
        shards.push([]);
        current = 0;
      }
      shards[shards.length - 1]!.push(entry);
      current += bytes;
    }
    const fileNames =
      shards.length === 1
        ? [SINGLE_FILE]
        : shards.map((_, i) => `model-${pad5(i + 1)}-of-${pad5(shards.length)}.safetensors`);
    await mkdir(directory, { recursive: true });
    const weightMap: Record<string, string> = {};
    for (const [i, shard] of shards.entries()) {
      const tensors: NamedArray[] = shard.map(([name, w]) => ({
        name,
        dtype: this.dtype,
        shape: [...w.shape],
        data: w.readRaw() as Float32Array | Uint16Array,
      }));
      await writeSafetensors(join(directory, fileNames[i]!), tensors, { format: 'pt' });
      for (const [name] of shard) weightMap[name] = fileNames[i]!;
    }
    if (shards.length > 1) {
      const totalSize = [...this.weights.values()].reduce((sum, w) => sum + w.bytes, 0);
      await writeFileAtomic(join(directory, INDEX_FILE), [
        `${JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2)}\n`,
      ]);
    }
    const config = { ...llamaConfigToHf(this.config), torch_dtype: this.dtype };
    await writeFileAtomic(join(directory, 'config.json'), [`${JSON.stringify(config, null, 2)}\n`]);
  }

  /** Frees the weights and RoPE tables (a CudaBlockBackend that took the weights may have freed them already). */
  dispose(): void {
    for (const w of this.weights.values()) w.free();
    this.cos.free();
    this.sin.free();
    this.disposed = true;
  }

  // ---------------------------------------------------------------------------------------------------
  // Training step

  /** Forward, loss, backward; returns the loss. */
  private trainStep(p: PreparedBatch, grads: Map<string, DeviceTensor>, t: StepTensors): number {
    const { n } = p;
    const H = this.config.hiddenSize;
    const L = this.layers.length;
    const embedTrainable = grads.has('model.embed_tokens.weight');
    // The lowest layer backward must reach: 0 when the embedding trains, L when no layer does.
    let lowest = L;
    for (const name of grads.keys()) {
      const m = /^model\.layers\.(\d+)\./.exec(name);
      if (m) lowest = Math.min(lowest, Number(m[1]));
    }
    if (embedTrainable) lowest = 0;
    const normGrad = grads.get('model.norm.weight') ?? null;
    const headGrad = this.lmHead
      ? (grads.get('lm_head.weight') ?? null)
      : (grads.get('model.embed_tokens.weight') ?? null);
    // d loss / d (final hidden state) is needed when anything at or below the final norm trains.
    const needHiddenGrad = embedTrainable || lowest < L || normGrad !== null;
    const count = p.rows.length;
    if (count === 0) return 0; // nothing predicts a label: loss 0, no gradient (HF would give NaN)

    // ---- forward
    // x [N, H] = embed_tokens[ids]
    let x = t.alloc([n, H], this.dtype, 'activations');
    this.ops.embedding(this.embed, p.ids, x);
    // Below the lowest trainable layer: forward only, in place, nothing kept.
    for (let l = 0; l < lowest; l++) this.layerForward(this.layers[l]!, x, p, t, 'inplace');
    const saved: SavedLayer[] = [];
    for (let l = lowest; l < L; l++) {
      const mode = this.gradientCheckpointing ? 'checkpoint' : 'save';
      const { out, acts } = this.layerForward(this.layers[l]!, x, p, t, mode);
      saved[l] = acts ? { kind: 'all', acts } : { kind: 'input', x };
      x = out;
    }
    // The forward's scratch (q, k, v, ... of the layers run in place or checkpointed) is not needed again.
    t.releaseScratch();
    // hf [N, H] = norm(x), rstdF [N]
    const xL = x;
    const hf = t.alloc([n, H], this.dtype, 'activations');
    const rstdF = t.alloc([n], 'float32', 'activations');
    this.ops.rmsNorm(xL, this.norm, hf, rstdF, this.config.rmsNormEps);
    // ---- loss (and d loss / d hf, fp32 [N, H], scattered from the labelled rows)
    const dHf = needHiddenGrad ? t.alloc([n, H], 'float32', 'workspace').fill(0) : null;
    const { lossSum } = this.headChunks(p, hf, dHf, headGrad, t, false);
    t.release(hf);
    if (!needHiddenGrad || dHf === null) return lossSum / count;

    // ---- backward
    // g [N, H]: d loss / d (residual stream), in the activation dtype, carried down layer by layer.
    let dHfAct = dHf;
    if (this.dtype !== 'float32') {
      dHfAct = t.alloc([n, H], this.dtype, 'workspace');
      this.device.cast(dHf, dHfAct);
    }
    const g = t.alloc([n, H], this.dtype, 'workspace');
    this.ops.rmsNormBackward(dHfAct, xL, this.norm, rstdF, g, normGrad, false);
    t.release(dHf, rstdF);
    if (dHfAct !== dHf) t.release(dHfAct);
    t.release(xL);
    for (let l = L - 1; l >= lowest; l--) {
      const layer = this.layers[l]!;
      const s = saved[l]!;
      // With gradient checkpointing the layer runs forward again here, keeping what backward needs.
      const acts = s.kind === 'all' ? s.acts : this.layerForward(layer, s.x, p, t, 'recompute').acts!;
      this.layerBackward(layer, acts, g, grads, l > lowest || embedTrainable, p, t);
      t.release(...Object.values(acts));
    }
    // d embed_tokens[ids] += g
    const dEmbed = grads.get('model.embed_tokens.weight');
    if (dEmbed !== undefined) this.ops.embeddingBackward(g, p.ids, dEmbed);
    return lossSum / count;
  }

  /**
   * One decoder layer forward on x [N, H].
   * - 'inplace': x becomes the layer's output, nothing is kept (layers below the lowest trainable one, eval).
   * - 'save': returns a new output and keeps every activation backward needs.
   * - 'checkpoint': returns a new output, keeps nothing but x (the caller keeps it).
   * - 'recompute': backward's replay of a checkpointed layer: keeps the activations, skips the MLP's
   *   down_proj and the output, which backward does not need.
   */
  private layerForward(
    layer: Layer,
    x: DeviceTensor,
    p: PreparedBatch,
    t: StepTensors,
    mode: 'inplace' | 'save' | 'checkpoint' | 'recompute',
  ): { out: DeviceTensor; acts: LayerActivations | undefined } {
    const { n } = p;
    const { hiddenSize: H, intermediateSize: I, rmsNormEps: eps } = this.config;
    const Q = this.config.numHeads * this.config.headDim;
    const KV = this.config.numKeyValueHeads * this.config.headDim;
    const keep = mode === 'save' || mode === 'recompute';
    const dt = this.dtype;
    const buffer = (name: string, shape: number[], dtype: TensorDType = dt) =>
      keep ? t.alloc(shape, dtype, 'activations') : t.scratchOf(name, shape, dtype);
    // A replay in backward borrows backward's own [N, H] scratch (free at that point) for h and ao.
    const [hName, aoName] = mode === 'recompute' ? ['bh', 'dh'] : ['h', 'ao'];
    // h [N, H] = input_layernorm(x), rstd1 [N]
    const h = t.scratchOf(hName, [n, H], dt);
    const rstd1 = buffer('rstd1', [n], 'float32');
    this.ops.rmsNorm(x, layer.inputNorm, h, rstd1, eps);
    // q [N, Q], k [N, KV], v [N, KV] = h W^T (+ b)
    const q = buffer('q', [n, Q]);
    const k = buffer('k', [n, KV]);
    const v = buffer('v', [n, KV]);
    this.linearForward(h, layer.q, q);
    this.linearForward(h, layer.k, k);
    this.linearForward(h, layer.v, v);
    // RoPE on q and k, in place
    const { numHeads, numKeyValueHeads, headDim } = this.config;
    this.ops.rope(q, this.cos, this.sin, p.s, numHeads, headDim, false);
    this.ops.rope(k, this.cos, this.sin, p.s, numKeyValueHeads, headDim, false);
    // attn [N, Q] = causal GQA attention, lse [B, heads, S]
    const attn = buffer('attn', [n, Q]);
    const lse = buffer('lse', [p.b, numHeads, p.s], 'float32');
    this.ops.attention(q, k, v, attn, lse, this.attentionDims(p));
    // x1 [N, H] = x + attn Wo^T (+ b)
    const ao = t.scratchOf(aoName, [n, H], dt);
    this.linearForward(attn, layer.o, ao);
    const x1 = mode === 'inplace' ? x : buffer('x1', [n, H]);
    this.ops.add(x, ao, x1);
    // h2 [N, H] = post_attention_layernorm(x1), rstd2 [N]
    const h2 = h;
    const rstd2 = buffer('rstd2', [n], 'float32');
    this.ops.rmsNorm(x1, layer.postNorm, h2, rstd2, eps);
    // gate, up [N, I] = h2 W^T (+ b)
    const gate = buffer('gate', [n, I]);
    const up = buffer('up', [n, I]);
    this.linearForward(h2, layer.gate, gate);
    this.linearForward(h2, layer.up, up);
    const acts: LayerActivations | undefined = keep
      ? { x, q, k, v, attn, lse, x1, gate, up, rstd1, rstd2 }
      : undefined;
    if (mode === 'recompute') return { out: x1, acts };
    // act [N, I] = silu(gate) * up; out [N, H] = x1 + act Wd^T (+ b)
    const act = t.scratchOf('act', [n, I], dt);
    this.ops.swiglu(gate, up, act);
    const down = ao;
    this.linearForward(act, layer.down, down);
    const out = mode === 'inplace' ? x : t.alloc([n, H], dt, 'activations');
    this.ops.add(x1, down, out);
    return { out, acts };
  }

  /**
   * One decoder layer backward. `g` [N, H] holds d loss / d (layer output) and becomes d loss / d (layer
   * input) in place (when `needInputGrad`; else it is left partial). Weight gradients are added only for
   * the parameters in `grads`.
   */
  private layerBackward(
    layer: Layer,
    a: LayerActivations,
    g: DeviceTensor,
    grads: Map<string, DeviceTensor>,
    needInputGrad: boolean,
    p: PreparedBatch,
    t: StepTensors,
  ): void {
    const { n } = p;
    const { hiddenSize: H, intermediateSize: I, rmsNormEps: eps } = this.config;
    const { numHeads, numKeyValueHeads, headDim } = this.config;
    const Q = numHeads * headDim;
    const KV = numKeyValueHeads * headDim;
    const dt = this.dtype;
    const trains = (l: Linear) => grads.has(`${l.name}.weight`) || grads.has(`${l.name}.bias`);
    const inputNormGrad = grads.get(layer.inputNormName) ?? null;
    const postNormGrad = grads.get(layer.postNormName) ?? null;
    const attentionSideTrains = inputNormGrad !== null || [layer.q, layer.k, layer.v].some(trains);

    // --- MLP: out = x1 + down(silu(gate) * up)
    // h2 [N, H] = post_attention_layernorm(x1), act [N, I] = silu(gate) * up: recomputed for weight gradients
    const h2 = t.scratchOf('bh', [n, H], dt);
    if (trains(layer.gate) || trains(layer.up)) this.ops.rmsNorm(a.x1, layer.postNorm, h2, a.rstd2, eps);
    const dAct = t.scratchOf('dAct', [n, I], dt);
    if (trains(layer.down)) {
      const act = dAct; // free until dAct is computed below
      this.ops.swiglu(a.gate, a.up, act);
      this.linearWeightGrad(g, act, layer.down, grads);
    }
    // dAct [N, I] = g Wd
    this.device.gemm(g, layer.down.weight, dAct, { m: n, n: I, k: H });
    // dGate, dUp [N, I]
    const dGate = t.scratchOf('dGate', [n, I], dt);
    const dUp = t.scratchOf('dUp', [n, I], dt);
    this.ops.swigluBackward(a.gate, a.up, dAct, dGate, dUp);
    this.linearWeightGrad(dGate, h2, layer.gate, grads);
    this.linearWeightGrad(dUp, h2, layer.up, grads);
    // dh2 [N, H] = dGate Wg + dUp Wu; g += post_attention_layernorm'(dh2)
    const dh = t.scratchOf('dh', [n, H], dt);
    this.device.gemm(dGate, layer.gate.weight, dh, { m: n, n: H, k: I });
    this.device.gemm(dUp, layer.up.weight, dh, { m: n, n: H, k: I, beta: 1 });
    this.ops.rmsNormBackward(dh, a.x1, layer.postNorm, a.rstd2, g, postNormGrad, true);

    // --- attention: x1 = x + o(attention(rope(q(h)), rope(k(h)), v(h))), h = input_layernorm(x)
    this.linearWeightGrad(g, a.attn, layer.o, grads);
    if (!needInputGrad && !attentionSideTrains) return; // nothing below o_proj trains or needs a gradient
    // dAttn [N, Q] = g Wo
    const dAttn = t.scratchOf('dAttn', [n, Q], dt);
    this.device.gemm(g, layer.o.weight, dAttn, { m: n, n: Q, k: H });
    // dq [N, Q], dk, dv [N, KV]; RoPE's backward is the inverse rotation
    const dq = t.scratchOf('dq', [n, Q], dt);
    const dk = t.scratchOf('dk', [n, KV], dt);
    const dv = t.scratchOf('dv', [n, KV], dt);
    this.ops.attentionBackward(a.q, a.k, a.v, a.attn, dAttn, a.lse, dq, dk, dv, this.attentionDims(p));
    this.ops.rope(dq, this.cos, this.sin, p.s, numHeads, headDim, true);
    this.ops.rope(dk, this.cos, this.sin, p.s, numKeyValueHeads, headDim, true);
    // h [N, H] = input_layernorm(x), recomputed for the q/k/v weight gradients
    const h = h2;
    if ([layer.q, layer.k, layer.v].some(trains)) {
      this.ops.rmsNorm(a.x, layer.inputNorm, h, a.rstd1, eps);
      this.linearWeightGrad(dq, h, layer.q, grads);
      this.linearWeightGrad(dk, h, layer.k, grads);
      this.linearWeightGrad(dv, h, layer.v, grads);
    }
    if (!needInputGrad && inputNormGrad === null) return;
    // dh [N, H] = dq Wq + dk Wk + dv Wv; g += input_layernorm'(dh)
    this.device.gemm(dq, layer.q.weight, dh, { m: n, n: H, k: Q });
    this.device.gemm(dk, layer.k.weight, dh, { m: n, n: H, k: KV, beta: 1 });
    this.device.gemm(dv, layer.v.weight, dh, { m: n, n: H, k: KV, beta: 1 });
    this.ops.rmsNormBackward(dh, a.x, layer.inputNorm, a.rstd1, g, inputNormGrad, true);
  }

  /** y [N, out] = x [N, in] W^T (+ b). */
  private linearForward(x: DeviceTensor, l: Linear, y: DeviceTensor): void {
    const [out, inp] = l.weight.shape as [number, number];
    this.device.gemm(x, l.weight, y, { m: x.numel / inp, n: out, k: inp, transB: true });
    if (l.bias) this.ops.addBias(y, l.bias);
  }

  /** dW [out, in] += dy^T x and db [out] += colsum(dy), straight into the fp32 gradient buffers, when trainable. */
  private linearWeightGrad(
    dy: DeviceTensor,
    x: DeviceTensor,
    l: Linear,
    grads: Map<string, DeviceTensor>,
  ): void {
    const [out, inp] = l.weight.shape as [number, number];
    const dW = grads.get(`${l.name}.weight`);
    if (dW) this.device.gemm(dy, x, dW, { m: out, n: inp, k: x.numel / inp, transA: true, beta: 1 });
    const db = l.bias ? grads.get(`${l.name}.bias`) : undefined;
    if (db) this.ops.biasBackward(dy, db);
  }

  /**
   * The LM head and cross-entropy over the labelled rows only, `lossChunkTokens` rows at a time:
   * hc [c, H] = hf[rows] (a row gather), logits [c, V] = hc W^T, crossEntropy turns them into dLogits in
   * place, then dW += dLogits^T hc / count and dHf[rows] += dLogits W / count. `evalOnly`: loss and
   * argmax, no gradient.
   */
  private headChunks(
    p: PreparedBatch,
    hf: DeviceTensor,
    dHf: DeviceTensor | null,
    headGrad: DeviceTensor | null,
    t: StepTensors,
    evalOnly: boolean,
  ): { lossSum: number; correct: number } {
    const H = this.config.hiddenSize;
    const V = this.config.vocabSize;
    const W = this.lmHead ?? this.embed;
    const count = p.rows.length;
    // dLogits are left unscaled (softmax - onehot, in [-1, 1]) and the mean's 1 / count is the GEMMs' alpha,
    // applied in fp32: scaled first, fp16 dLogits of small probabilities would underflow to 0.
    const gradScale = evalOnly || (dHf === null && headGrad === null) ? 0 : 1;
    const alpha = 1 / count;
    let lossSum = 0;
    let correct = 0;
    for (let start = 0; start < count; start += this.lossChunkTokens) {
      const c = Math.min(this.lossChunkTokens, count - start);
      const rows = t.alloc([c], 'int32', 'workspace').write(p.rows.subarray(start, start + c));
      const labels = t.alloc([c], 'int32', 'workspace').write(p.rowLabels.subarray(start, start + c));
      // hc [c, H] = hf[rows]
      const hc = t.alloc([c, H], this.dtype, 'workspace');
      this.ops.embedding(hf, rows, hc);
      // logits [c, V] = hc W^T
      const logits = t.alloc([c, V], this.dtype, 'workspace');
      this.device.gemm(hc, W, logits, { m: c, n: V, k: H, transB: true });
      if (evalOnly) {
        const best = t.alloc([c], 'int32', 'workspace');
        this.ops.argmaxRows(logits, best);
        const predicted = best.readRaw() as Int32Array;
        for (let i = 0; i < c; i++) if (predicted[i] === p.rowLabels[start + i]) correct++;
        t.release(best);
      }
      // losses [c]; logits -> dLogits in place
      const losses = t.alloc([c], 'float32', 'workspace');
      this.ops.crossEntropy(logits, labels, losses, gradScale);
      lossSum += this.ops.sum(losses);
      if (gradScale !== 0) {
        // dW [V, H] += dLogits^T hc / count
        if (headGrad)
          this.device.gemm(logits, hc, headGrad, { m: V, n: H, k: c, transA: true, alpha, beta: 1 });
        if (dHf) {
          // dHc [c, H] = dLogits W / count (fp32); dHf[rows] += dHc
          const dHc = t.alloc([c, H], 'float32', 'workspace');
          this.device.gemm(logits, W, dHc, { m: c, n: H, k: V, alpha });
          this.ops.embeddingBackward(dHc, rows, dHf);
          t.release(dHc);
        }
      }
      t.release(rows, labels, hc, logits, losses);
    }
    return { lossSum, correct };
  }

  private attentionDims(p: PreparedBatch): LlamaAttentionDims {
    return {
      batch: p.b,
      seqLen: p.s,
      heads: this.config.numHeads,
      kvHeads: this.config.numKeyValueHeads,
      headDim: this.config.headDim,
      lengths: p.lengths,
    };
  }

  /** Checks the batch on the host, finds the labelled rows and uploads ids and lengths. */
  private prepare(batch: DeviceLlamaBatch, t: StepTensors): PreparedBatch {
    const { batchSize: b, seqLen: s, inputIds, labels } = batch;
    const V = this.config.vocabSize;
    if (!Number.isSafeInteger(b) || b < 1)
      throw new BadamOptionError('batch.batchSize', b, 'an integer >= 1');
    if (!Number.isSafeInteger(s) || s < 1) throw new BadamOptionError('batch.seqLen', s, 'an integer >= 1');
    if (s > this.maxPositions)
      throw new BadamOptionError(
        'batch.seqLen',
        s,
        `at most ${this.maxPositions} (the RoPE table)`,
        'truncate the sequences or create the model with a larger maxPositions option',
      );
    const n = b * s;
    for (const [what, array] of [
      ['batch.inputIds', inputIds],
      ['batch.labels', labels],
    ] as const) {
      if (!(array instanceof Int32Array) || array.length !== n)
        throw new BadamOptionError(
          what,
          array instanceof Int32Array ? `${array.length} values` : describe(array),
          `an Int32Array of batchSize * seqLen = ${b} * ${s} = ${n} values`,
        );
    }
    for (let i = 0; i < n; i++) {
      const id = inputIds[i]!;
      if (id < 0 || id >= V)
        throw new BadamOptionError(
          `batch.inputIds[${i}]`,
          id,
          `a token id in [0, ${V}) (vocab_size ${V})`,
          'the tokenizer does not match the model, or padding uses an id outside the vocabulary',
        );
      const label = labels[i]!;
      if (label !== IGNORE_INDEX && (label < 0 || label >= V))
        throw new BadamOptionError(
          `batch.labels[${i}]`,
          label,
          `-100 (ignored) or a token id in [0, ${V})`,
          'mark positions that are not trained on with -100',
        );
    }
    let lengths: Int32Array | undefined;
    if (batch.lengths !== undefined) {
      lengths = batch.lengths;
      if (!(lengths instanceof Int32Array) || lengths.length !== b)
        throw new BadamOptionError(
          'batch.lengths',
          describe(lengths),
          `an Int32Array of batchSize = ${b} values`,
        );
      lengths.forEach((len, i) => {
        if (!Number.isSafeInteger(len) || len < 1 || len > s)
          throw new BadamOptionError(`batch.lengths[${i}]`, len, `a length in [1, seqLen = ${s}]`);
      });
    }
    // Position s of row r predicts labels[r, s + 1]; the last position predicts nothing.
    const rows: number[] = [];
    const rowLabels: number[] = [];
    for (let r = 0; r < b; r++) {
      for (let pos = 0; pos + 1 < s; pos++) {
        const label = labels[r * s + pos + 1]!;
        if (label === IGNORE_INDEX) continue;
        rows.push(r * s + pos);
        rowLabels.push(label);
      }
    }
    const tokens = lengths ? lengths.reduce((a, x) => a + x, 0) : n;
    const ids = t.alloc([n], 'int32', 'workspace').write(inputIds);
    const lengthsTensor = lengths?.some((len) => len < s)
      ? t.alloc([b], 'int32', 'workspace').write(lengths)
      : null;
    return {
      b,
      s,
      n,
      tokens,
      rows: Int32Array.from(rows),
      rowLabels: Int32Array.from(rowLabels),
      ids,
      lengths: lengthsTensor,
    };
  }

  /** The fp32 gradient buffer of each trainable name, checked against the parameter. */
  private gradientBuffers(
    trainable: readonly string[],
    gradientOf: (name: string) => DeviceTensor,
  ): Map<string, DeviceTensor> {
    const grads = new Map<string, DeviceTensor>();
    for (const name of trainable) {
      const w = this.weights.get(name);
      if (w === undefined)
        throw new BadamOptionError(
          'trainable parameter',
          name,
          'a parameter name of this model (see parameters())',
          this.config.tieWordEmbeddings && name === 'lm_head.weight'
            ? 'the head is tied: train model.embed_tokens.weight instead'
            : undefined,
        );
      const grad = gradientOf(name);
      if (grad.dtype !== 'float32' || grad.numel !== w.numel)
        throw new BadamOptionError(
          `gradientOf(${JSON.stringify(name)})`,
          `a ${grad.dtype} tensor of ${grad.numel} values`,
          `an fp32 tensor of ${w.numel} values`,
        );
      grads.set(name, grad);
    }
    return grads;
  }

  private live(): void {
    if (this.disposed)
      throw new BadamOptionError('DeviceLlama', 'disposed', 'a live model (dispose() freed its weights)');
  }
}

function pad5(i: number): string {
  return String(i).padStart(5, '0');
}

function describe(value: unknown): string {
  return value === undefined ? 'undefined' : ((value as object).constructor?.name ?? typeof value);
}

/** Checks what the config and options must satisfy; returns the dtype. */
function checkOptions(config: LlamaConfig, options: DeviceLlamaOptions): DeviceLlamaDType {
  const dtype = options.dtype ?? 'bfloat16';
  if (dtype !== 'bfloat16' && dtype !== 'float16' && dtype !== 'float32')
    throw new BadamOptionError('dtype', dtype, "'bfloat16', 'float16' or 'float32'");
  if (config.headDim % 2 !== 0)
    throw new BadamOptionError('config headDim', config.headDim, 'an even number (RoPE rotates pairs)');
  if (config.numHeads % config.numKeyValueHeads !== 0)
    throw new BadamOptionError(
      'config num_key_value_heads',
      config.numKeyValueHeads,
      `a divisor of num_attention_heads (${config.numHeads})`,
    );
  const { maxPositions, lossChunkTokens } = options;
  if (maxPositions !== undefined && (!Number.isSafeInteger(maxPositions) || maxPositions < 1))
    throw new BadamOptionError('maxPositions', maxPositions, 'an integer >= 1');
  if (lossChunkTokens !== undefined && (!Number.isSafeInteger(lossChunkTokens) || lossChunkTokens < 1))
    throw new BadamOptionError('lossChunkTokens', lossChunkTokens, 'an integer >= 1');
  return dtype;
}

function checkShape(
  name: string,
  actual: readonly number[],
  expected: readonly number[],
  where: string,
): void {
  if (actual.join() !== expected.join())
    throw new BadamOptionError(
      `${where} ${name} shape`,
      `[${actual.join(', ')}]`,
      `[${expected.join(', ')}] (what config.json's architecture implies)`,
    );
}

/**
 * A weight tensor of `dtype` from stored values: the bits as they are when the stored dtype is `dtype`,
 * fp32 rounded on write, other 16-bit types uploaded as they are and cast on the device.
 */
function uploadAs(
  device: Device,
  data: Float32Array | Uint16Array,
  shape: readonly number[],
  stored: 'float32' | 'bfloat16' | 'float16',
  dtype: DeviceLlamaDType,
): DeviceTensor {
  if (stored === dtype || stored === 'float32') return device.tensor(data, shape, dtype, 'weights');
  const staged = device.tensor(data, shape, stored, 'workspace');
  try {
    return device.castTo(staged, dtype, 'weights');
  } finally {
    staged.free();
  }
}
