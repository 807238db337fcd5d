import { BadamOptionError } from '@badam/core';
import { type CudaAddon, type Handle, loadAddon } from '../addon.js';
import type { Device } from '../device.js';
import type { DeviceTensor } from '../device-tensor.js';

/** The collective library of a process group: Gloo between CPU processes, NCCL between GPUs. */
export type CollectiveBackend = 'gloo' | 'nccl';

/** Who this process is in a multi-process run and where the others are (torchrun's variables). */
export interface ProcessGroupOptions {
  /** RANK: this process, in [0, worldSize). */
  readonly rank: number;
  /** WORLD_SIZE: processes in the run. */
  readonly worldSize: number;
  /** MASTER_ADDR: where rank 0 hosts the rendezvous store. Default 127.0.0.1. */
  readonly masterAddr?: string;
  /** MASTER_PORT: the store's port. Default 29500 (torchrun's). */
  readonly masterPort?: number;
  /** Every collective, and the rendezvous, fail after this many milliseconds. Default 30 minutes. */
  readonly timeoutMs?: number;
  /** Default: gloo on the CPU device, nccl on a CUDA device. */
  readonly backend?: CollectiveBackend;
  /**
   * When another rank fails and this one has not stopped by itself within half the timeout (at most 30 s),
   * print why and exit with code 1, as torchrun stops the surviving workers. Default true.
   */
  readonly exitOnPeerFailure?: boolean;
}

/** A collective failed: the message names this rank, the collective, and what is known of the others. */
export class DistributedError extends Error {
  override readonly name = 'DistributedError';
  constructor(
    message: string,
    /** The rank that raised it. */
    readonly rank: number,
  ) {
    super(message);
  }
}

/** A collective in flight: {@link CollectiveWork.wait} returns once it is done (and throws if it failed). */
export interface CollectiveWork {
  wait(): void;
}

/** Whether Gloo and NCCL can be used here, and if not, why. */
export interface CollectivesStatus {
  readonly gloo: { readonly available: boolean; readonly reason?: string };
  readonly nccl: { readonly available: boolean; readonly reason?: string };
}

/** Which collective libraries this machine and build can use, and why not. */
export function collectivesStatus(): CollectivesStatus {
  const info = loadAddon().collectivesInfo();
  return {
    gloo: info.gloo ? { available: true } : { available: false, reason: info.glooUnavailableReason },
    nccl: info.nccl ? { available: true } : { available: false, reason: info.ncclUnavailableReason },
  };
}

/**
 * The processes of one run and the collectives BAdam's sharded training uses, from Gloo (CPU device) or
 * NCCL (CUDA device) over the rendezvous store rank 0 hosts. Device-tensor collectives return a
 * {@link CollectiveWork} and run on a communication thread (Gloo) or stream (NCCL) while the caller goes
 * on; the tensors must stay alive until `wait()` returns. Host collectives return their result. Every
 * collective runs in the order it is called, which must be the same on every rank.
 *
 * A failure (a rank died, a collective timed out) is a {@link DistributedError} naming this rank and what
 * the store knows: which rank exited, or each rank's last progress ({@link markProgress}).
 *
 * @example
 * ```ts
 * const group = ProcessGroup.open(Device.cpu(), { rank: 0, worldSize: 2, masterPort: 29500 });
 * const sums = group.allReduceSum(Float64Array.of(lossSum, labelTokens)); // the same on every rank
 * group.close();
 * ```
 */
export class ProcessGroup {
  readonly rank: number;
  readonly worldSize: number;
  readonly backend: CollectiveBackend;
  private closed = false;

  private constructor(
    private readonly addon: CudaAddon,
    private readonly handle: Handle,
    readonly device: Device,
    options: ProcessGroupOptions,
    backend: CollectiveBackend,
  ) {
    this.rank = options.rank;
    this.worldSize = options.worldSize;
    this.backend = backend;
  }

  /**
   * Joins the run: rank 0 starts the rendezvous store, every rank connects to it (waiting up to the timeout
   * for rank 0), then the collective library connects every pair of ranks. Returns once all have joined.
   */
  static open(device: Device, options: ProcessGroupOptions): ProcessGroup {
    const { rank, worldSize } = options;
    if (!Number.isSafeInteger(worldSize) || worldSize < 1)
      throw new BadamOptionError('WORLD_SIZE', worldSize, 'a whole number >= 1');
    if (!Number.isSafeInteger(rank) || rank < 0 || rank >= worldSize)
      throw new BadamOptionError('RANK', rank, `a whole number in [0, ${worldSize})`);
    const port = options.masterPort ?? 29500;
    if (!Number.isSafeInteger(port) || port < 1 || port > 65535)
      throw new BadamOptionError('MASTER_PORT', port, 'a TCP port in [1, 65535]');
    const timeoutMs = options.timeoutMs ?? 30 * 60 * 1000;
    if (!(timeoutMs > 0))
      throw new BadamOptionError('timeout', timeoutMs, 'a positive number of milliseconds');
    const backend = options.backend ?? (device.description.kind === 'cuda' ? 'nccl' : 'gloo');
    const addon = loadAddon();
    let handle: Handle;
    try {
      handle = addon.processGroupCreate(device.contextHandle, backend, {
        rank,
        worldSize,
        masterAddr: options.masterAddr ?? '127.0.0.1',
        masterPort: port,
        timeoutMs,
        exitOnPeerFailure: options.exitOnPeerFailure ?? true,
      });
    } catch (error) {
      throw new DistributedError(
        `rank ${rank}: could not join the run of ${worldSize} processes through ${backend} (store ${options.masterAddr ?? '127.0.0.1'}:${port}): ${(error as Error).message}`,
        rank,
      );
    }
    return new ProcessGroup(addon, handle, device, options, backend);
  }

  /**
   * `full` = every rank's `shard`, concatenated by rank; rank r gives `counts[r]` elements (`counts[rank]`
   * is `shard.numel`, their sum `full.numel`). Runs in the background: wait before reading `full`.
   */
  allGather(shard: DeviceTensor, full: DeviceTensor, counts: readonly number[]): CollectiveWork {
    this.device.checkOwns(shard, full);
    return this.work('all-gather', () =>
      this.addon.pgAllGather(this.handle, shard.handle, full.handle, counts),
    );
  }

  /**
   * `accumulator += ` this rank's range of the sum over ranks of `full` (fp32): a reduce-scatter whose sum
   * runs in rank order, so its result is the same in every run with the same number of ranks. The ranges
   * are `counts` (by rank). Runs in the background: wait before reading `accumulator` or reusing `full`.
   */
  reduceScatterAdd(full: DeviceTensor, accumulator: DeviceTensor, counts: readonly number[]): CollectiveWork {
    this.device.checkOwns(full, accumulator);
    return this.work('reduce-scatter', () =>
      this.addon.pgReduceScatterAdd(this.handle, full.handle, accumulator.handle, counts),
    );
  }

  /** Every rank's `values`, by rank. */
  allGatherHost(values: Float64Array): Float64Array[] {
    const all = this.call('all-gather', () => this.addon.pgAllGatherHost(this.handle, values));
    return Array.from({ length: this.worldSize }, (_, r) =>
      all.subarray(r * values.length, (r + 1) * values.length),
    );
  }

  /**
   * The elementwise sum over ranks, added in rank order in double precision: bit for bit the same on every
   * rank, and in every run with the same number of ranks.
   */
  allReduceSum(values: Float64Array): Float64Array {
    const all = this.allGatherHost(values);
    const sum = new Float64Array(values.length);
    for (const part of all) for (let i = 0; i < sum.length; i++) sum[i]! += part[i]!;
    return sum;
  }

  /** Rank `root`'s `data` on every rank (the array must have the same length everywhere). */
  broadcast(data: Uint8Array, root = 0): Uint8Array {
    this.call('broadcast', () => this.addon.pgBroadcastHost(this.handle, data, root));
    return data;
  }

  /** Rank `root`'s value (as JSON) on every rank: one decision, made once, seen by all. */
  broadcastJson<T>(value: T, root = 0): T {
    const mine = new TextEncoder().encode(this.rank === root ? JSON.stringify(value) : '');
    const length = this.broadcast(new Uint8Array(new Float64Array([mine.length]).buffer), root);
    const bytes = new Uint8Array(new Float64Array(length.buffer)[0]!);
    if (this.rank === root) bytes.set(mine);
    this.broadcast(bytes, root);
    return JSON.parse(new TextDecoder().decode(bytes)) as T;
  }

  /** Returns once every rank has called it. */
  barrier(): void {
    this.call('barrier', () => this.addon.pgBarrier(this.handle));
  }

  /** Records this rank's progress (e.g. its optimizer step) in the store, for failure messages. */
  markProgress(step: number): void {
    this.call('progress', () => this.addon.pgMarkProgress(this.handle, step));
  }

  /** Why the run failed, when another rank has been seen failing; undefined otherwise. */
  peerFailure(): string | undefined {
    if (this.closed) return undefined;
    return this.addon.pgPeerFailure(this.handle) || undefined;
  }

  /**
   * Leaves the run cleanly: a barrier (every rank has finished its collectives), then a goodbye to the
   * store, which rank 0 keeps up until every other rank has left. Call it on every rank at the end.
   */
  close(): void {
    if (this.closed) return;
    this.barrier();
    this.closed = true;
    this.addon.pgClose(this.handle);
  }

  private work(op: string, start: () => Handle): CollectiveWork {
    const handle = this.call(op, start);
    let done = false;
    return {
      wait: () => {
        if (done) return;
        done = true;
        this.call(op, () => this.addon.workWait(handle));
      },
    };
  }

  private call<T>(op: string, f: () => T): T {
    if (this.closed)
      throw new DistributedError(`rank ${this.rank}: ${op} after the process group was closed`, this.rank);
    try {
      return f();
    } catch (error) {
      if (error instanceof DistributedError) throw error;
      throw new DistributedError(
        `rank ${this.rank}: ${op} failed: ${this.addon.pgDiagnose(this.handle)} (${(error as Error).message})`,
        this.rank,
      );
    }
  }
}
