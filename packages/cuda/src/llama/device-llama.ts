import { BadamOptionError, type LlamaConfig, type NamedArray } from '@badam/core';
import type { CudaParameter } from '../cuda-block-backend.js';
import type { Device } from '../device.js';
import type { DeviceTensor } from '../device-tensor.js';
import { type DeviceLlamaBatch, prepareBatch } from './llama-batch.js';
import { GradientBuffers, gradientDtypesOf } from './llama-gradients.js';
import {
  checkLlamaOptions,
  initialLlamaWeights,
  llamaWeightsFromArrays,
  llamaWeightsFromDirectory,
  randomLlamaWeights,
} from './llama-loading.js';
import { buildLlamaNet, type DeviceLlamaDType, type LlamaNet } from './llama-net.js';
import { saveLlamaWeights } from './llama-saving.js';
import { evaluatePass, trainStep } from './llama-step.js';
import { StepTensors } from './step-tensors.js';

export type { DeviceLlamaBatch } from './llama-batch.js';
export type { DeviceLlamaDType } from './llama-net.js';

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

/**
 * A Llama-family causal LM (Llama 2/3, Mistral, Qwen2, TinyLlama) on a {@link Device}, written like llm.c: a
 * forward and a backward you can read top to bottom, on the Device's Llama ops (flash attention with GQA, RMSNorm,
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
  private readonly weights: Map<string, DeviceTensor>;
  private readonly net: LlamaNet;
  private disposed = false;

  private constructor(
    readonly device: Device,
    readonly config: LlamaConfig,
    weights: Map<string, DeviceTensor>,
    options: DeviceLlamaOptions & { dtype: DeviceLlamaDType },
  ) {
    this.dtype = options.dtype;
    this.gradientCheckpointing = options.gradientCheckpointing ?? false;
    this.maxPositions = options.maxPositions ?? Math.min(config.maxPositionEmbeddings, 4096);
    this.lossChunkTokens = options.lossChunkTokens ?? Math.max(64, Math.floor(2 ** 26 / config.vocabSize));
    this.weights = weights;
    this.net = buildLlamaNet(device, config, weights, {
      dtype: this.dtype,
      gradientCheckpointing: this.gradientCheckpointing,
      maxPositions: this.maxPositions,
      lossChunkTokens: this.lossChunkTokens,
    });
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
    const dtype = checkLlamaOptions(config, options);
    return DeviceLlama.over(device, config, initialLlamaWeights(device, config, dtype, options), {
      ...options,
      dtype,
    });
  }

  /**
   * A randomly initialised model as Hugging Face initialises one (`_init_weights`): every matrix normal(0,
   * initializerRange) (default 0.02, config.json's `initializer_range`), biases 0, norms 1, drawn on the device
   * by a counter-based generator ({@link DeviceTensor.fillNormal}; parameter k of the model uses stream
   * `seed * 2^16 + k`): seconds for TinyLlama-1.1B where {@link create}'s JavaScript draws take minutes, and
   * nothing on the host. Not the values of @badam/models' seeded initialisation (that is {@link create}).
   *
   * @example
   * ```ts
   * const model = DeviceLlama.createRandom(Device.cpuEngine(), llamaConfigFromHf(smolLmConfigJson), { seed: 42 });
   * ```
   */
  static createRandom(
    device: Device,
    config: LlamaConfig,
    options: DeviceLlamaOptions & { seed?: number; initializerRange?: number } = {},
  ): DeviceLlama {
    const dtype = checkLlamaOptions(config, options);
    const seed = options.seed ?? 0;
    if (!Number.isSafeInteger(seed) || seed < 0 || seed >= 2 ** 36)
      throw new BadamOptionError('seed', seed, 'an integer in [0, 2^36)');
    return DeviceLlama.over(
      device,
      config,
      randomLlamaWeights(device, config, dtype, seed, options.initializerRange ?? 0.02),
      { ...options, dtype },
    );
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
    const dtype = checkLlamaOptions(config, options);
    return DeviceLlama.over(device, config, llamaWeightsFromArrays(device, config, dtype, arrays), {
      ...options,
      dtype,
    });
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
    const { config, dtype, weights } = await llamaWeightsFromDirectory(device, directory, options);
    return DeviceLlama.over(device, config, weights, { ...options, dtype });
  }

  /** The model over `weights`; frees them when it cannot be built. */
  private static over(
    device: Device,
    config: LlamaConfig,
    weights: Map<string, DeviceTensor>,
    options: DeviceLlamaOptions & { dtype: DeviceLlamaDType },
  ): DeviceLlama {
    try {
      return new DeviceLlama(device, config, weights, options);
    } catch (error) {
      for (const t of weights.values()) t.free();
      throw error;
    }
  }

  /**
   * The parameters in Hugging Face `named_parameters()` order (LlamaForCausalLM.namedParameters' names;
   * tied `lm_head` not listed), whose values are the model's own weight tensors, for
   * `new CudaBlockBackend(device, model.parameters())` to take over: the backend's AdamW updates them in
   * place and the model sees the new values at once. Each asks for its gradient in the dtype the step
   * accumulates it in: the model's dtype for the layers' weight matrices and an untied head (as PyTorch's
   * bf16 `.grad`; the fused AdamW widens it exactly), fp32 for the embedding, norms and biases.
   */
  parameters(): CudaParameter[] {
    this.live();
    return [...this.weights].map(([name, w]) => ({
      name,
      shape: [...w.shape],
      dtype: this.dtype,
      values: w,
      gradientDtype: gradientDtypesOf(name, w.shape, this.dtype)[0]!,
    }));
  }

  /**
   * Forward and backward of one micro-batch: returns Hugging Face's loss and ADDS (+=) d loss / d p into
   * `gradientOf(p)` (a buffer of p's size, e.g. CudaBlockBackend.gradientOf: fp32, or the model's 16-bit
   * dtype for weight matrices, as {@link parameters} asks) for every p in `trainable`, and for no other
   * parameter. `gradientOf(p)` is called when p's gradient is first written (a layer's as its backward
   * starts), so a backend that allocates on request holds no layer's gradient through the forward. Layers
   * below the lowest trainable one run forward only, keeping nothing; backward stops at it.
   */
  lossAndGradients(
    batch: DeviceLlamaBatch,
    trainable: readonly string[],
    gradientOf: (name: string) => DeviceTensor,
  ): DeviceLlamaLoss {
    this.live();
    const grads = new GradientBuffers(
      this.weights,
      trainable,
      gradientOf,
      this.dtype,
      this.config.tieWordEmbeddings,
    );
    const t = new StepTensors(this.device);
    try {
      const prepared = prepareBatch(this.net, batch, t);
      const result = trainStep(this.net, prepared, grads, t);
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
      const p = prepareBatch(this.net, batch, t);
      const { lossSum, correct } = evaluatePass(this.net, p, t);
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
    await saveLlamaWeights(directory, this.config, this.dtype, this.weights, options);
  }

  /** Frees the weights and RoPE tables (a CudaBlockBackend that took the weights may have freed them already). */
  dispose(): void {
    for (const w of this.weights.values()) w.free();
    this.net.cos.free();
    this.net.sin.free();
    this.disposed = true;
  }

  private live(): void {
    if (this.disposed)
      throw new BadamOptionError('DeviceLlama', 'disposed', 'a live model (dispose() freed its weights)');
  }
}
