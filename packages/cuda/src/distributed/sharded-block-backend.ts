import {
  adamStateTensors,
  adamwConfigOf,
  type BackendMemoryReport,
  BadamOptionError,
  BadamStateError,
  type BlockActivation,
  type BlockUpdate,
  type CheckpointableBlockBackend,
  type NamedArray,
  type OptimizerDescription,
  type ResolvedAdamWConfig,
  readAdamState,
  tensorsByName,
} from '@badam/core';
import type { Device } from '../device.js';
import type { DeviceTensor } from '../device-tensor.js';
import type { ShardedParameter } from './layer-gather.js';
import { DistributedError, type ProcessGroup } from './process-group.js';
import { shardOf } from './shard-layout.js';

/** The active block's state of one parameter on this rank: all of it shards, except the backward's full gradient. */
interface ActiveShard {
  readonly param: ShardedParameter;
  /** fp32 master of this rank's shard (null for fp32 weights: the shard is its own master). */
  readonly master: DeviceTensor | null;
  /** fp32 sum of the reduce-scattered gradients of this rank's shard since the last update. */
  readonly grad: DeviceTensor;
  readonly expAvg: DeviceTensor;
  readonly expAvgSq: DeviceTensor;
  readonly decay: boolean;
  /** The backward's full-size fp32 gradient of the current micro-batch, until it is reduce-scattered. */
  full: DeviceTensor | null;
}

/**
 * Core's block backend over a {@link ShardedLlama}'s shards, ZeRO-3 style: the active block's fp32 masters,
 * gradients and AdamW moments exist for this rank's shard only. A micro-batch's backward adds into a
 * full-size fp32 gradient ({@link gradientOf}); {@link reduceGradients} then reduce-scatters it (summing
 * over ranks in rank order: deterministic for a fixed number of ranks) into the shard's accumulator and
 * frees it. Each rank's AdamW updates its shard and writes the rounded weight shard: what the next gather
 * sees. Clipping's norm is the sum of squares over every rank's shard (an all-reduce), before any update.
 *
 * Gradients are summed per label token (the model's mean times its label tokens) and the update divides
 * by the step's label tokens over every rank and micro-batch ({@link gradientDivisor}, transformers'
 * `num_items_in_batch`), so N ranks take the step one process takes on the same global batch.
 *
 * Every call that touches the active block is collective: every rank makes it, in the same order.
 */
export class ShardedBlockBackend implements CheckpointableBlockBackend<OptimizerDescription, never> {
  private readonly params = new Map<string, ShardedParameter>();
  private active: ActiveShard[] = [];
  private config: ResolvedAdamWConfig | undefined;
  private stepsInBlock = 0;
  private labelTokens = 0;

  constructor(
    readonly device: Device,
    readonly group: ProcessGroup,
    parameters: readonly ShardedParameter[],
  ) {
    for (const p of parameters) this.params.set(p.name, p);
  }

  get trainableNames(): string[] {
    return this.active.map((a) => a.param.name);
  }

  /** The full-size fp32 gradient of trainable `name` for the current micro-batch (zeros at first). */
  gradientOf(name: string): DeviceTensor {
    const a = this.requireActive(name);
    a.full ??= this.device.zeros(a.param.shape, 'float32', 'gradients');
    return a.full;
  }

  /**
   * After a micro-batch's backward: every trainable parameter's full gradient, times `scale` (this rank's
   * label tokens: the model's mean becomes a sum), reduce-scattered into the shards' accumulators and
   * freed. Collective.
   */
  reduceGradients(scale: number): void {
    for (const a of this.active) {
      const full = a.full ?? this.device.zeros(a.param.shape, 'float32', 'gradients');
      a.full = null;
      try {
        if (scale !== 1) this.device.scale(full, scale);
        if (a.param.layout.sharded) {
          this.group.reduceScatterAdd(full, a.grad, a.param.layout.counts).wait();
        } else {
          // A tensor smaller than the world is whole everywhere: its few values are summed on the host.
          const summed = this.group.allReduceSum(Float64Array.from(full.read()));
          const acc = a.grad.read();
          for (let i = 0; i < acc.length; i++) acc[i]! += summed[i]!;
          a.grad.write(acc);
        }
      } finally {
        full.free();
      }
    }
  }

  /** Adds a micro-batch's label tokens over every rank to the step's divisor. */
  addLabelTokens(globalLabelTokens: number): void {
    this.labelTokens += globalLabelTokens;
  }

  activateBlock(activation: BlockActivation<OptimizerDescription>): void {
    if (this.active.length > 0)
      throw new BadamStateError('ShardedBlockBackend: a block is already active; deactivate it first');
    // The block every rank activates is rank 0's decision: a rank that would train another block stops here.
    const decided = this.group.broadcastJson(activation.blockIndex);
    if (decided !== activation.blockIndex)
      throw new DistributedError(
        `rank ${this.group.rank}: activating block ${activation.blockIndex} where rank 0 activates block ${decided}: the ranks were started with different BAdam settings (--switch_mode, --seed, --switch_block_every, --start_block); start every rank with the same flags`,
        this.group.rank,
      );
    this.config = adamwConfigOf(activation.baseOptimizer);
    this.stepsInBlock = 0;
    this.labelTokens = 0;
    const created: ActiveShard[] = [];
    try {
      for (const t of activation.parameters) {
        const param = this.requireParam(t.name);
        const shape = param.shard.shape;
        created.push({
          param,
          master: param.dtype === 'float32' ? null : this.device.castTo(param.shard, 'float32', 'masters'),
          grad: this.device.zeros(shape, 'float32', 'gradients'),
          expAvg: this.device.zeros(shape, 'float32', 'optimizerState'),
          expAvgSq: this.device.zeros(shape, 'float32', 'optimizerState'),
          decay: t.weightDecay,
          full: null,
        });
      }
    } catch (error) {
      for (const a of created) freeActive(a);
      throw error;
    }
    this.active = created;
  }

  deactivateBlock(): void {
    for (const a of this.active) freeActive(a);
    this.active = [];
    this.labelTokens = 0;
  }

  applyUpdate(update: BlockUpdate): void {
    const config = this.config;
    if (config === undefined || this.active.length === 0)
      throw new BadamStateError('ShardedBlockBackend: applyUpdate without an active block');
    for (const a of this.active) {
      this.device.adamw(a.master, a.param.shard, a.grad, a.expAvg, a.expAvgSq, {
        lr: update.lr,
        beta1: config.beta1,
        beta2: config.beta2,
        eps: config.eps,
        weightDecay: a.decay ? config.weightDecay : 0,
        step: update.stepInBlock,
        gradScale: update.gradientScale,
      });
      a.grad.fill(0);
    }
    this.stepsInBlock = update.stepInBlock;
    this.labelTokens = 0;
  }

  /** The step's label tokens over every rank and micro-batch: what the summed gradients are divided by. */
  gradientDivisor(): number {
    return Math.max(1, this.labelTokens);
  }

  discardGradients(): void {
    for (const a of this.active) {
      a.grad.fill(0);
      a.full?.free();
      a.full = null;
    }
    this.labelTokens = 0;
  }

  /** The squared norm of the summed gradients over every rank's shard (a whole tensor counted once). Collective. */
  gradientSumOfSquares(): number {
    const sharded = this.active.filter((a) => a.param.layout.sharded).map((a) => a.grad);
    const whole = this.active.filter((a) => !a.param.layout.sharded).map((a) => a.grad);
    let local = sharded.length > 0 ? this.device.sumSquares(sharded) : 0;
    if (this.group.rank === 0 && whole.length > 0) local += this.device.sumSquares(whole);
    return this.group.allReduceSum(Float64Array.of(local))[0]!;
  }

  /** Gradients are added by the model into {@link gradientOf}'s buffers; none come through here. */
  accumulateGradients(gradients: ReadonlyMap<string, never>): void {
    if (gradients.size > 0)
      throw new BadamOptionError(
        'gradients',
        `${gradients.size} host gradients`,
        'none: a sharded model adds its gradients into gradientOf(name)',
      );
  }

  /**
   * Every weight, whole, as fp32 (gathered one at a time). Collective; only rank 0 gets the values (the
   * others get empty arrays), so that one host holds the model, as when one process saves it.
   */
  readWeights(): NamedArray[] {
    return [...this.params.values()].map((p) => ({
      name: p.name,
      dtype: 'float32',
      shape: [...p.shape],
      data: this.gatherToRankZero(p.shard, p),
    }));
  }

  /** Overwrites every weight given (whole fp32 arrays; each rank takes its shard), masters of active ones too. */
  writeWeights(weights: ReadonlyMap<string, NamedArray>): void {
    for (const [name, w] of weights) {
      const p = this.requireParam(name);
      if (w.data.length !== p.layout.numel)
        throw new BadamOptionError(
          `values of ${name}`,
          `${w.data.length} values`,
          `${p.layout.numel} values`,
        );
      p.shard.write(Float32Array.from(shardOf(w.data as Float32Array, p.layout, this.group.rank)));
      const a = this.active.find((x) => x.param.name === name);
      if (a?.master) this.device.cast(p.shard, a.master);
    }
  }

  /**
   * The active block's AdamW state under every backend's names, whole (gathered; values on rank 0 only).
   * Collective.
   */
  exportOptimizerTensors(): NamedArray[] {
    if (this.stepsInBlock === 0) return [];
    return this.active.flatMap((a) =>
      adamStateTensors(
        { name: a.param.name, shape: [...a.param.shape] },
        {
          expAvg: this.gatherToRankZero(a.expAvg, a.param),
          expAvgSq: this.gatherToRankZero(a.expAvgSq, a.param),
          step: this.stepsInBlock,
          master: a.master ? this.gatherToRankZero(a.master, a.param) : undefined,
        },
      ),
    );
  }

  /** Restores a checkpoint's whole optimizer tensors (from any backend, any number of ranks) into the shards. */
  importOptimizerTensors(tensors: readonly NamedArray[], stepInBlock: number): void {
    this.stepsInBlock = stepInBlock;
    if (stepInBlock === 0) return;
    const byName = tensorsByName(tensors);
    for (const a of this.active) {
      const info = { name: a.param.name, shape: [...a.param.shape], dtype: a.param.dtype };
      const saved = readAdamState(byName, info, { expectedStep: stepInBlock, master: a.master !== null });
      const mine = (values: Float32Array) =>
        Float32Array.from(shardOf(values, a.param.layout, this.group.rank));
      a.expAvg.write(mine(saved.expAvg));
      a.expAvgSq.write(mine(saved.expAvgSq));
      if (saved.master !== undefined && a.master) a.master.write(mine(saved.master));
    }
  }

  memory(): BackendMemoryReport {
    const stats = this.device.memory();
    const { weights, masters, gradients, optimizerState, activations, workspace, other } = stats.byKind;
    return {
      bytes: stats.inUse,
      peakBytes: stats.peakInUse,
      byKind: { weights, masters, gradients, optimizerState, activations, workspace, other },
      source: `${this.device.description.kind === 'cuda' ? 'cuda' : 'cpu device'} caching allocator of rank ${this.group.rank} of ${this.group.worldSize}`,
    };
  }

  /** Frees the active block's state (the shards are the model's). */
  dispose(): void {
    for (const a of this.active) freeActive(a);
    this.active = [];
  }

  /** `shard` (a shard of `param`'s layout) made whole on every rank's device; its values read on rank 0 only. */
  private gatherToRankZero(shard: DeviceTensor, param: ShardedParameter): Float32Array {
    if (!param.layout.sharded) return this.group.rank === 0 ? shard.read() : new Float32Array(0);
    const full = this.device.empty([param.layout.numel], shard.dtype, 'workspace');
    try {
      this.group.allGather(shard, full, param.layout.counts).wait();
      return this.group.rank === 0 ? full.read() : new Float32Array(0);
    } finally {
      full.free();
    }
  }

  private requireParam(name: string): ShardedParameter {
    const p = this.params.get(name);
    if (p === undefined) throw new BadamOptionError('parameter name', name, 'a parameter of this model');
    return p;
  }

  private requireActive(name: string): ActiveShard {
    const a = this.active.find((x) => x.param.name === name);
    if (a === undefined) {
      this.requireParam(name);
      throw new BadamStateError(
        `parameter ${JSON.stringify(name)} is not trainable now (trainable: ${this.trainableNames.join(', ')}); compute gradients for the active block only`,
      );
    }
    return a;
  }
}

function freeActive(a: ActiveShard): void {
  a.master?.free();
  a.grad.free();
  a.expAvg.free();
  a.expAvgSq.free();
  a.full?.free();
  a.full = null;
}
