import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BadamOptionError, BadamStateError, type LlamaConfig, llamaConfigFromHf } from '@badam/core';
import { SafetensorsModel } from '@badam/safetensors';
import type { Device } from '../device.js';
import type { DeviceTensor } from '../device-tensor.js';
import type {
  DeviceLlamaBatch,
  DeviceLlamaEvaluation,
  DeviceLlamaLoss,
  DeviceLlamaOptions,
} from '../llama/device-llama.js';
import { prepareBatch } from '../llama/llama-batch.js';
import { GradientBuffers, type ParameterSize } from '../llama/llama-gradients.js';
import { checkLlamaOptions, fusedGroupOpenedBy } from '../llama/llama-loading.js';
import { buildLlamaNet, type DeviceLlamaDType, type LlamaNet, type LlamaPart } from '../llama/llama-net.js';
import { forEachInitialLlamaParameter, llamaParameterSpecs } from '../llama/llama-parameters.js';
import { type SavedWeight, saveLlamaWeights } from '../llama/llama-saving.js';
import { evaluatePass, trainStep } from '../llama/llama-step.js';
import { StepTensors } from '../llama/step-tensors.js';
import { LayerGather, type ShardedParameter } from './layer-gather.js';
import type { ProcessGroup } from './process-group.js';
import { shardLayout, shardOf } from './shard-layout.js';

/** Options of a {@link ShardedLlama}: DeviceLlama's, and whether the next part's gather overlaps the compute. */
export interface ShardedLlamaOptions extends DeviceLlamaOptions {
  /** Gather the next part of a pass while the current one computes. Default true. */
  prefetch?: boolean;
}

/** A stored parameter: fp32 values, or 16-bit bits with their dtype. */
type Stored = { data: Float32Array | Uint16Array; dtype: 'float32' | 'bfloat16' | 'float16' };

/**
 * A Llama-family causal LM split over the ranks of a {@link ProcessGroup}, ZeRO-3 style: each rank holds a
 * 1/N flat shard of every weight ('weights' in the allocator's accounting), and a pass gathers each part
 * (a layer, the embedding, the head) just before using it and frees it after, the next part's gather
 * overlapping the current part's compute ({@link LayerGather}). The forward and backward are DeviceLlama's
 * own (`src/llama/`), over the gathered weights.
 *
 * Every rank must make the same calls in the same order: the collectives pair up across ranks. A rank
 * whose micro-batch is empty (or has no label) still goes through every gather of the pass.
 *
 * @example
 * ```ts
 * const group = ProcessGroup.open(Device.cpu(), { rank, worldSize: 2 });
 * const model = ShardedLlama.create(group.device, group, config, { dtype: 'float32', seed: 0 });
 * const { loss, labelTokens } = model.lossAndGradients(myRowsOfTheBatch, trainable, gradientOf);
 * ```
 */
export class ShardedLlama {
  readonly dtype: DeviceLlamaDType;
  readonly maxPositions: number;
  private readonly params: Map<string, ShardedParameter>;
  /** Every parameter's full shape and size, what a gradient buffer is checked against. */
  private readonly sizes: Map<string, ParameterSize>;
  private readonly gather: LayerGather;
  private readonly net: LlamaNet;
  private disposed = false;

  private constructor(
    readonly device: Device,
    readonly group: ProcessGroup,
    readonly config: LlamaConfig,
    params: Map<string, ShardedParameter>,
    options: ShardedLlamaOptions & { dtype: DeviceLlamaDType },
  ) {
    this.dtype = options.dtype;
    this.maxPositions = options.maxPositions ?? Math.min(config.maxPositionEmbeddings, 4096);
    this.params = params;
    this.sizes = new Map(
      [...params.values()].map((p) => [p.name, { shape: p.shape, numel: p.layout.numel }]),
    );
    this.gather = new LayerGather(
      device,
      group,
      params,
      (part) => this.namesOf(part),
      options.prefetch ?? true,
    );
    this.net = buildLlamaNet(
      device,
      config,
      this.gather,
      {
        dtype: this.dtype,
        gradientCheckpointing: options.gradientCheckpointing ?? false,
        maxPositions: this.maxPositions,
        lossChunkTokens: options.lossChunkTokens ?? Math.max(64, Math.floor(2 ** 26 / config.vocabSize)),
      },
      this.gather,
    );
  }

  /**
   * A randomly initialised model: DeviceLlama.create's (and @badam/models') weights for the same seed, each
   * rank keeping its shard of each parameter as it is drawn (one parameter on the host at a time).
   */
  static create(
    device: Device,
    group: ProcessGroup,
    config: LlamaConfig,
    options: ShardedLlamaOptions & { seed?: number; initializerRange?: number } = {},
  ): ShardedLlama {
    const dtype = checkLlamaOptions(config, options);
    const params = new Map<string, ShardedParameter>();
    try {
      forEachInitialLlamaParameter(config, options, (spec, values) => {
        params.set(
          spec.name,
          uploadShard(device, group, spec.name, spec.shape, { data: values, dtype: 'float32' }, dtype),
        );
      });
      packFusedGroups(device, params);
      return new ShardedLlama(device, group, config, params, { ...options, dtype });
    } catch (error) {
      for (const p of params.values()) p.shard.free();
      throw error;
    }
  }

  /**
   * Loads a local Hugging Face directory (config.json, single or sharded safetensors) as DeviceLlama's
   * fromPretrained does, each rank keeping its shard of each tensor (one tensor on the host at a time).
   */
  static async fromPretrained(
    device: Device,
    group: ProcessGroup,
    directory: string,
    options: ShardedLlamaOptions = {},
  ): Promise<ShardedLlama> {
    const configPath = join(directory, 'config.json');
    let json: unknown;
    try {
      json = JSON.parse(await readFile(configPath, 'utf8'));
    } catch (error) {
      throw new BadamOptionError(
        'model directory',
        directory,
        'a Hugging Face model folder with a readable config.json',
        `${configPath}: ${(error as Error).message}`,
      );
    }
    const config = llamaConfigFromHf(json, configPath);
    const dtype = checkLlamaOptions(config, options);
    const file = await SafetensorsModel.open(directory);
    const params = new Map<string, ShardedParameter>();
    try {
      for (const spec of llamaParameterSpecs(config)) {
        if (!file.has(spec.name) || file.shapeOf(spec.name).join() !== spec.shape.join())
          throw new BadamOptionError(
            `${directory} weights`,
            file.has(spec.name) ? `${spec.name} [${file.shapeOf(spec.name).join(', ')}]` : `no ${spec.name}`,
            `every tensor config.json's architecture needs (${spec.name} [${spec.shape.join(', ')}])`,
          );
        const stored = await file.read(spec.name);
        if (stored.dtype !== 'float32' && stored.dtype !== 'bfloat16' && stored.dtype !== 'float16')
          throw new BadamOptionError(`${directory} ${spec.name} dtype`, stored.dtype, 'F32, BF16 or F16');
        params.set(spec.name, uploadShard(device, group, spec.name, spec.shape, stored as Stored, dtype));
      }
      packFusedGroups(device, params);
      return new ShardedLlama(device, group, config, params, { ...options, dtype });
    } catch (error) {
      for (const p of params.values()) p.shard.free();
      throw error;
    } finally {
      await file.close();
    }
  }

  /** The parameters in Hugging Face `named_parameters()` order, with this rank's shards. */
  parameters(): ShardedParameter[] {
    this.live();
    return [...this.params.values()];
  }

  /**
   * Forward and backward of this rank's rows of the micro-batch (none: `batch` null): returns their loss
   * (mean over this rank's labelled positions) and ADDS d loss / d p into `gradientOf(p)` (a full-size fp32
   * buffer, asked for when p's gradient is first written: a layer's as its backward starts) for every p in
   * `trainable`. Collective: every rank calls it for the same micro-batch.
   */
  lossAndGradients(
    batch: DeviceLlamaBatch | null,
    trainable: readonly string[],
    gradientOf: (name: string) => DeviceTensor,
  ): DeviceLlamaLoss {
    this.live();
    // fp32 buffers only (they are reduce-scattered in fp32), fetched as each part's backward starts.
    const grads = new GradientBuffers(
      this.sizes,
      trainable,
      gradientOf,
      'float32',
      this.config.tieWordEmbeddings,
    );
    const t = new StepTensors(this.device);
    try {
      const prepared = prepareBatch(this.net, batch ?? emptyBatch(), t);
      const loss = trainStep(this.net, prepared, grads, t);
      const labelTokens = batch === null ? 0 : prepared.rows.length;
      return { loss, tokens: batch === null ? 0 : prepared.tokens, labelTokens };
    } finally {
      t.freeAll();
    }
  }

  /** Loss and next-token accuracy of this rank's rows (none: null). Collective, like {@link lossAndGradients}. */
  evaluate(batch: DeviceLlamaBatch | null): DeviceLlamaEvaluation {
    this.live();
    const t = new StepTensors(this.device);
    try {
      const p = prepareBatch(this.net, batch ?? emptyBatch(), t);
      const { lossSum, correct } = evaluatePass(this.net, p, t);
      const count = batch === null ? 0 : p.rows.length;
      return { loss: count > 0 ? lossSum / count : 0, labelTokens: count, correct, counted: count };
    } finally {
      t.freeAll();
    }
  }

  /**
   * The whole of weight `name` on this rank's device, gathered from every rank (a workspace tensor the caller
   * frees). Collective.
   */
  gatherWeight(name: string): DeviceTensor {
    this.live();
    const p = this.params.get(name);
    if (p === undefined) throw new BadamOptionError('parameter name', name, 'a parameter of this model');
    const full = this.device.empty(p.shape, p.dtype, 'workspace');
    if (!p.layout.sharded) {
      this.device.copy(full, p.shard);
      return full;
    }
    try {
      this.group.allGather(p.shard, full, p.layout.counts).wait();
    } catch (error) {
      full.free();
      throw error;
    }
    return full;
  }

  /**
   * Every weight whole, in the model's dtype, in rank 0's memory (gathered one at a time: the device holds
   * one whole weight at a time); the other ranks get an empty map. Collective. What {@link writeGathered}
   * writes: saving from memory can be retried (a full disk) without the other ranks.
   */
  gatherWeights(): Map<string, SavedWeight> {
    this.live();
    const out = new Map<string, SavedWeight>();
    for (const p of this.params.values()) {
      const full = this.gatherWeight(p.name);
      try {
        if (this.group.rank === 0) {
          const bits = full.readRaw() as Float32Array | Uint16Array;
          out.set(p.name, { shape: [...p.shape], bytes: bits.byteLength, readRaw: () => bits });
        }
      } finally {
        full.free();
      }
    }
    return out;
  }

  /**
   * Writes {@link gatherWeights}' result in Hugging Face's format as DeviceLlama.save does (config.json with
   * `torch_dtype`, model.safetensors or shards with their index, each file atomically). Rank 0 only; no
   * collective.
   */
  async writeGathered(
    directory: string,
    weights: ReadonlyMap<string, SavedWeight>,
    options: { maxShardBytes?: number } = {},
  ): Promise<void> {
    await saveLlamaWeights(directory, this.config, this.dtype, weights, options);
  }

  /** {@link gatherWeights} then, on rank 0, {@link writeGathered}; every rank returns once rank 0 has. Collective. */
  async save(directory: string, options: { maxShardBytes?: number } = {}): Promise<void> {
    const weights = this.gatherWeights();
    if (this.group.rank === 0) await this.writeGathered(directory, weights, options);
    this.group.barrier();
  }

  /** Frees the shards and the RoPE tables. */
  dispose(): void {
    this.gather.end();
    for (const p of this.params.values()) p.shard.free();
    this.net.cos.free();
    this.net.sin.free();
    this.disposed = true;
  }

  /** The parameters a part of a pass uses. */
  private namesOf(part: LlamaPart): readonly string[] {
    if (part === 'embed') return ['model.embed_tokens.weight'];
    if (part === 'head')
      return [
        'model.norm.weight',
        this.config.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight',
      ];
    const prefix = `model.layers.${part}.`;
    return [...this.params.keys()].filter((name) => name.startsWith(prefix));
  }

  private live(): void {
    if (this.disposed)
      throw new BadamStateError(
        'ShardedLlama: disposed (dispose() freed its shards); it cannot be used again',
      );
  }
}

/** One row of one token and no label: a rank without rows still walks the pass's gathers. */
function emptyBatch(): DeviceLlamaBatch {
  return { batchSize: 1, seqLen: 1, inputIds: Int32Array.of(0), labels: Int32Array.of(-100) };
}

/**
 * Puts the members of each fused group that no rank splits (every group in a world of one; biases smaller
 * than the world) into one allocation, consecutive as the step reads them (see fusedGroupOpenedBy); a group
 * with a split member is gathered into one allocation for each pass instead (LayerGather).
 */
function packFusedGroups(device: Device, params: Map<string, ShardedParameter>): void {
  for (const name of [...params.keys()]) {
    const members = fusedGroupOpenedBy(name)?.map((n) => params.get(n)!);
    if (members === undefined || members.some((m) => m.layout.sharded)) continue;
    const whole = device.empty(
      [members.reduce((sum, m) => sum + m.layout.numel, 0)],
      members[0]!.dtype,
      'weights',
    );
    try {
      let offset = 0;
      for (const m of members) {
        const packed = whole.view(offset, m.shape);
        try {
          device.copy(packed, m.shard);
        } catch (error) {
          packed.free();
          throw error;
        }
        m.shard.free();
        params.set(m.name, { ...m, shard: packed });
        offset += m.layout.numel;
      }
    } finally {
      whole.free(); // the members' views hold the memory now
    }
  }
}

/** This rank's shard of a stored parameter, in `dtype` on the device. */
function uploadShard(
  device: Device,
  group: ProcessGroup,
  name: string,
  shape: readonly number[],
  stored: Stored,
  dtype: DeviceLlamaDType,
): ShardedParameter {
  const numel = shape.reduce((a, b) => a * b, 1);
  const layout = shardLayout(numel, group.worldSize);
  const part = shardOf(stored.data, layout, group.rank);
  // A tensor that is not split keeps its shape: the pass uses it as it is.
  const shardShape = layout.sharded ? [layout.counts[group.rank]!] : [...shape];
  let shard: DeviceTensor;
  if (stored.dtype === dtype || stored.dtype === 'float32') {
    shard = device.tensor(part, shardShape, dtype, 'weights');
  } else {
    const staged = device.tensor(part, shardShape, stored.dtype, 'workspace');
    try {
      shard = device.castTo(staged, dtype, 'weights');
    } finally {
      staged.free();
    }
  }
  return { name, shape: [...shape], dtype, layout, shard };
}
