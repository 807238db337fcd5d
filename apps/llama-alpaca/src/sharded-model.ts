import { cpus } from 'node:os';
import type { RunIO } from '@badam/callbacks';
import { type DataSource, UsageError } from '@badam/core';
import type { DeviceTensor, ProcessGroup, ShardedLlama, ShardedTask } from '@badam/cuda';
import { ByteTokenizer, HfTokenizer, type PaddedBatch, type Tokenizer } from '@badam/data';
import { BUILTIN_INITIALIZER_RANGE, builtinLlamaConfig } from '@badam/embedded';
import { type LlamaConfig, readLlamaConfig } from '@badam/models';
import { isDeviceBackend, type RankEnvironment, type RunnerModel } from '@badam/runner';
import { deviceDtype } from './device-model.js';
import { deviceBatch } from './device-training-task.js';
import type { TrainOptions } from './train-options.js';

/** This process's part in a run over several processes: its rank and the group of all of them. */
export interface ShardedRun {
  readonly env: RankEnvironment;
  readonly group: ProcessGroup;
}

/** The Llama of a multi-process run, sharded over its ranks, with what the run needs beside it. */
export interface ShardedRunModel {
  readonly model: ShardedLlama;
  readonly config: LlamaConfig;
  readonly tokenizer: Tokenizer;
  readonly builtin: boolean;
}

/**
 * Joins the run this process is a rank of (torchrun's variables): its device — GPU LOCAL_RANK; with
 * `--cuda_device cpu` the CPU reference device; on `--backend cpu` the CPU engine — and the process group
 * over it (NCCL on GPUs, Gloo on the CPU), waiting up to `--ddp_timeout` for every rank.
 */
export async function joinShardedRun(options: TrainOptions, env: RankEnvironment): Promise<ShardedRun> {
  if (!isDeviceBackend(options.backend))
    throw new UsageError(
      `a run over ${env.worldSize} processes shards its model on @badam/cuda's devices (--backend cpu, or cuda), but this one uses --backend ${options.backend}: use --backend cpu or run in one process`,
    );
  const { openDevice, ProcessGroup } = await import('@badam/cuda');
  const where = options.cudaDevice;
  const device = openDevice(where === 'cpu' || where === 'cpu-engine' ? where : env.localRank);
  const group = ProcessGroup.open(device, {
    rank: env.rank,
    worldSize: env.worldSize,
    masterAddr: env.masterAddr,
    masterPort: env.masterPort,
    timeoutMs: (options.ddpTimeout ?? 1800) * 1000,
  });
  return { env, group };
}

/**
 * The run's Llama, each rank keeping its shard of every weight: from `--model_name_or_path`, or the
 * built-in tiny Llama initialised from `--seed` (the same weights as in one process). `beforeWeights` runs
 * once the config is known and before any weight is read.
 */
export async function loadShardedLlama(
  options: TrainOptions,
  run: ShardedRun,
  beforeWeights: (config: LlamaConfig) => void,
): Promise<ShardedRunModel> {
  if (options.trainFromScratch)
    throw new UsageError(
      `--train_from_scratch initialises its model in one process; a run over ${run.group.worldSize} processes shards a model it loads: drop --nproc_per_node, or train from a saved start`,
    );
  const { ShardedLlama } = await import('@badam/cuda');
  const { group } = run;
  const modelOptions = (config: LlamaConfig) => ({
    dtype: deviceDtype(options),
    gradientCheckpointing: options.gradientCheckpointing,
    maxPositions: Math.min(config.maxPositionEmbeddings, Math.ceil(options.cutoffLen / 8) * 8),
  });
  if (options.modelNameOrPath === undefined) {
    const config = builtinLlamaConfig();
    beforeWeights(config);
    const model = ShardedLlama.create(group.device, group, config, {
      ...modelOptions(config),
      seed: options.seed,
      initializerRange: BUILTIN_INITIALIZER_RANGE,
    });
    return { model, config, tokenizer: new ByteTokenizer(), builtin: true };
  }
  const config = await readLlamaConfig(options.modelNameOrPath);
  beforeWeights(config);
  const tokenizer = await HfTokenizer.fromDirectory(options.modelNameOrPath);
  const model = await ShardedLlama.fromPretrained(
    group.device,
    group,
    options.modelNameOrPath,
    modelOptions(config),
  );
  return { model, config, tokenizer, builtin: false };
}

/**
 * The causal-LM task of a sharded Llama on this rank's rows of each batch (a batch with no rows: the rank
 * still takes part in every gather), reporting its label tokens so that the loss and the update are
 * normalised over every rank's.
 */
export function shardedCausalLmTask(
  model: ShardedLlama,
  gradientOf: (name: string) => DeviceTensor,
): ShardedTask<PaddedBatch> {
  const rows = (batch: PaddedBatch) => (batch.inputIds.length === 0 ? null : deviceBatch(batch));
  return {
    lossAndGradients(batch, trainable) {
      const { loss, tokens, labelTokens } = model.lossAndGradients(rows(batch), trainable, gradientOf);
      return { loss, tokens, labelTokens };
    },
    evaluate(batch) {
      const { loss, labelTokens, correct, counted } = model.evaluate(rows(batch));
      return { loss, labelTokens, metrics: { accuracy: counted > 0 ? correct / counted : 0 } };
    },
  };
}

/** The sharded Llama as the runner kit trains it: @badam/cuda's sharded trainer backend factory bound to it. */
export function shardedLlamaRunnerModel(
  model: ShardedLlama,
  group: ProcessGroup,
  options: TrainOptions,
): RunnerModel<PaddedBatch> {
  const onRanks = {
    device: group.device,
    group,
    parameters: () => model.parameters(),
    task: (gradientOf: (name: string) => DeviceTensor) => shardedCausalLmTask(model, gradientOf),
  };
  return {
    kind: 'Llama',
    partition: { includeEmbedding: options.includeEmbedding, includeLmHead: options.includeLmHead },
    addLora: () => {
      throw new UsageError(
        '--finetuning_type lora does not run over several processes yet: use block or full',
      );
    },
    parameters: () => model.parameters().map((p) => ({ name: p.name, shape: [...p.shape], dtype: p.dtype })),
    createTrainerBackend: async (plan) =>
      (await import('@badam/cuda')).createShardedTrainerBackend(plan, onRanks),
  };
}

/** Rows [start, end) of a padded batch (no rows: an empty batch). */
export function paddedRows(batch: PaddedBatch, start: number, end: number): PaddedBatch {
  const labels = batch.labels.slice(start, end);
  return {
    inputIds: batch.inputIds.slice(start, end),
    labels,
    attentionMask: batch.attentionMask.slice(start, end),
    // Labels that a position predicts (position 0 predicts none), as padBatch counts them.
    labelTokens: labels.reduce((n, row) => n + row.filter((l, i) => i > 0 && l !== -100).length, 0),
  };
}

/**
 * This rank's share of a data source of global micro-batches (the per-device batch times the ranks): its
 * contiguous rows, balanced over the ranks; every rank sees every micro-batch, with no rows when the last
 * one is too short to reach it. The union over ranks is the global batch one process would train on.
 */
export function rankRows(
  source: DataSource<PaddedBatch>,
  rank: number,
  worldSize: number,
): DataSource<PaddedBatch> {
  return {
    ...(source.length !== undefined ? { length: source.length } : {}),
    async *batches(epoch: number) {
      for await (const batch of source.batches(epoch)) {
        const n = batch.inputIds.length;
        yield paddedRows(batch, Math.floor((rank * n) / worldSize), Math.floor(((rank + 1) * n) / worldSize));
      }
    },
  };
}

/** Where a rank's messages go: rank 0 says everything; the others only warn and fail, naming themselves. */
export function rankIO(io: RunIO, rank: number): RunIO {
  if (rank === 0) return io;
  return { log: () => {}, warn: (message) => io.warn(`rank ${rank}: ${message}`) };
}

/**
 * The threads of each rank's CPU kernels when `nprocPerNode` ranks share this machine and the user set
 * none (as torchrun sets OMP_NUM_THREADS): the cores, divided among them.
 */
export function threadsPerRank(
  nprocPerNode: number,
  env: NodeJS.ProcessEnv = process.env,
): NodeJS.ProcessEnv {
  if (env.BADAM_THREADS !== undefined) return env;
  return { ...env, BADAM_THREADS: String(Math.max(1, Math.floor(cpus().length / nprocPerNode))) };
}
