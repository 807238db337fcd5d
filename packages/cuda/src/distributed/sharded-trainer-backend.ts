import {
  type BackendMemoryReport,
  type BackendModel,
  BlockOptimizer,
  BlockTrainer,
  type BlockTrainerTask,
  checkPlannedParameters,
  type EvaluationResult,
  type NamedArray,
  nonFiniteArrays,
  type PlannedTrainerBackend,
  type TrainingPlan,
  type TrainingSnapshot,
  UsageError,
} from '@badam/core';
import type { Device } from '../device.js';
import { DevicePeakTracker } from '../device-peak-tracker.js';
import type { DeviceTensor } from '../device-tensor.js';
import { cudaDeviceLabel } from '../open-device.js';
import type { ShardedParameter } from './layer-gather.js';
import type { ProcessGroup } from './process-group.js';
import { ShardedBlockBackend } from './sharded-block-backend.js';

type MaybePromise<T> = T | Promise<T>;

/** What a sharded model computes for its trainer on this rank's rows of a micro-batch. */
export interface ShardedTask<TBatch> {
  /**
   * Forward and backward on this rank's rows: their mean loss over their label tokens, their real tokens and
   * label tokens; the gradients go into the backend's full-size buffers (`gradientOf`). Collective.
   */
  lossAndGradients(
    batch: TBatch,
    trainable: readonly string[],
  ): MaybePromise<{ loss: number; tokens: number; labelTokens: number }>;
  /** Loss (mean over this rank's label tokens), label tokens and metrics of an evaluation batch. Collective. */
  evaluate(
    batch: TBatch,
  ): MaybePromise<{ loss: number; labelTokens: number; metrics?: Readonly<Record<string, number>> }>;
}

/** A model split over the ranks of a process group, as {@link createShardedTrainerBackend} trains it. */
export interface ShardedTrainingModel<TBatch> {
  readonly device: Device;
  readonly group: ProcessGroup;
  /** Every parameter in model order, with this rank's shard (a {@link ShardedLlama}'s). */
  parameters(): readonly ShardedParameter[];
  /** The model's task, adding its gradients into `gradientOf(name)`. */
  task(gradientOf: (name: string) => DeviceTensor): ShardedTask<TBatch>;
}

/** One rank's memory now and at its peak, as every rank reports it each micro-batch. */
interface RankMemory {
  bytes: number;
  peakBytes: number;
}

/**
 * The BlockTrainer of a sharded run: rank 0's snapshot holds every weight and the optimizer's tensors
 * whole (gathered); the other ranks' hold none, except that a tensor with a NaN or an infinity is marked
 * on every rank, so that every rank's Trainer refuses the same checkpoint. Its memory report carries every
 * rank's bytes.
 */
class ShardedRunTrainer<TBatch> extends BlockTrainer<TBatch, unknown, never> {
  ranks: RankMemory[] = [];

  constructor(
    optimizer: BlockOptimizer<unknown, ShardedBlockBackend>,
    task: BlockTrainerTask<TBatch, never>,
    description: string,
    private readonly tracker: DevicePeakTracker,
    private readonly group: ProcessGroup,
  ) {
    super(optimizer as never, task, { description });
  }

  override memory(): BackendMemoryReport {
    return {
      ...super.memory(),
      peakBytes: this.tracker.peakBytes(),
      ...(this.ranks.length > 0 ? { ranks: this.ranks } : {}),
    };
  }

  override async snapshot(): Promise<TrainingSnapshot> {
    const full = await super.snapshot();
    const broken = this.group.broadcastJson(
      this.group.rank === 0 ? nonFiniteArrays([...full.weights, ...full.optimizer.tensors]) : [],
    );
    if (this.group.rank === 0) return full;
    const marks: NamedArray[] = broken.map((name) => ({
      name,
      dtype: 'float32',
      shape: [1],
      data: Float32Array.of(Number.NaN),
    }));
    return { weights: marks, optimizer: { state: full.optimizer.state, tensors: [] } };
  }
}

/**
 * @badam/cuda's trainer backend factory for a model sharded over N processes (ZeRO-3 style), the
 * multi-process twin of {@link createCudaTrainerBackend}: core's BlockOptimizer over a
 * {@link ShardedBlockBackend} driven by core's BlockTrainer. Each micro-batch, every rank computes its rows;
 * their gradients are reduce-scattered and their loss, label tokens and tokens summed over ranks, so the
 * loss the Trainer sees (and logs) is the global micro-batch's, and the update divides by the step's global
 * label tokens. Rank 0's snapshots hold the whole model (the other ranks' none: write checkpoints from
 * rank 0). Collective from end to end: every rank makes the same calls.
 *
 * @example
 * ```ts
 * const model = ShardedLlama.create(device, group, config, { dtype: 'float32', seed: 0 });
 * const backend = await createShardedTrainerBackend(plan, {
 *   device, group, parameters: () => model.parameters(),
 *   task: (gradientOf) => ({ lossAndGradients: (b, trainable) => model.lossAndGradients(b, trainable, gradientOf),
 *                            evaluate: (b) => model.evaluate(b) }),
 * });
 * ```
 */
export async function createShardedTrainerBackend<TBatch>(
  plan: TrainingPlan,
  model: ShardedTrainingModel<TBatch>,
): Promise<PlannedTrainerBackend<TBatch>> {
  if (plan.optimizer.kind !== 'block' || (plan.method !== 'block' && plan.method !== 'full')) {
    throw new UsageError(
      `${plan.label} (${plan.method}) does not run over several processes yet: train block or full with --nproc_per_node, or ${plan.method} in one process`,
    );
  }
  const { device, group } = model;
  const parameters = model.parameters();
  const infos = parameters.map((p) => ({ name: p.name, shape: [...p.shape], dtype: p.dtype }));
  checkPlannedParameters(plan, infos);
  const blocks = new ShardedBlockBackend(device, group, parameters);
  const tracker = new DevicePeakTracker(device);
  const optimizer = new BlockOptimizer({ ...plan.optimizer.options, namedParameters: infos }, blocks);
  const task = model.task((name) => blocks.gradientOf(name));
  let trainer: ShardedRunTrainer<TBatch> | undefined;
  const distributed: BlockTrainerTask<TBatch, never> = {
    async lossAndGradients(batch, trainable) {
      group.markProgress(optimizer.globalStepCount + 1);
      tracker.sample(false);
      const local = await task.lossAndGradients(batch, trainable);
      tracker.sample(true);
      blocks.reduceGradients(local.labelTokens);
      // One exchange: the micro-batch's loss, label tokens and tokens over every rank, and every rank's memory.
      const stats = device.memory();
      const all = group.allGatherHost(
        Float64Array.of(
          local.loss * local.labelTokens,
          local.labelTokens,
          local.tokens,
          stats.inUse,
          tracker.peakBytes(),
        ),
      );
      let lossSum = 0;
      let labels = 0;
      let tokens = 0;
      for (const r of all) {
        lossSum += r[0]!;
        labels += r[1]!;
        tokens += r[2]!;
      }
      blocks.addLabelTokens(labels);
      if (trainer) trainer.ranks = all.map((r) => ({ bytes: r[3]!, peakBytes: r[4]! }));
      return { loss: labels > 0 ? lossSum / labels : 0, tokens, gradients: new Map<string, never>() };
    },
    async evaluate(batch): Promise<EvaluationResult> {
      const local = await task.evaluate(batch);
      const names = Object.keys(local.metrics ?? {}).sort();
      const w = local.labelTokens;
      const sums = group.allReduceSum(
        Float64Array.from([local.loss * w, w, ...names.map((k) => (local.metrics?.[k] ?? 0) * w)]),
      );
      const weight = sums[1]!;
      return {
        loss: weight > 0 ? sums[0]! / weight : 0,
        weight,
        metrics: Object.fromEntries(names.map((k, i) => [k, weight > 0 ? sums[2 + i]! / weight : 0])),
      };
    },
  };
  const label = `${cudaDeviceLabel(device)}, ${group.worldSize} ranks (${group.backend})`;
  const description =
    plan.method === 'block'
      ? `${plan.label} on ${label}, ZeRO-3 sharded: ${optimizer.summary}, base AdamW`
      : `${plan.label} on ${label}, ZeRO-3 sharded: AdamW over ${optimizer.trainableNames.length} trainable tensors`;
  trainer = new ShardedRunTrainer<TBatch>(optimizer, distributed, description, tracker, group);
  let disposed = false;
  let peakBytes = 0;
  return {
    trainer,
    peakMemoryBytes: () => (disposed ? peakBytes : tracker.peakBytes()),
    peakMemoryByKind: () => tracker.peaksByKind(),
    // Collective: every rank checks its shards, and the names of every rank's broken ones are summed up.
    nonFiniteWeights: () => {
      const flags = group.allReduceSum(
        Float64Array.from(parameters, (p) => (Number.isFinite(device.sumSquares([p.shard])) ? 0 : 1)),
      );
      return parameters.filter((_, i) => flags[i]! > 0).map((p) => p.name);
    },
    dispose() {
      if (disposed) return;
      tracker.sample(false);
      peakBytes = tracker.peakBytes();
      disposed = true;
      optimizer.dispose();
    },
  };
}

/** A sharded model bound to {@link createShardedTrainerBackend}: core's `BackendModel`, for a runner. */
export function shardedBackendModel<TBatch>(model: ShardedTrainingModel<TBatch>): BackendModel<TBatch> {
  return {
    parameters: () => model.parameters().map((p) => ({ name: p.name, shape: [...p.shape], dtype: p.dtype })),
    createTrainerBackend: (plan) => createShardedTrainerBackend(plan, model),
  };
}
