import { BadamStateError } from '@badam/core';
import type { Device } from '../device.js';
import type { DeviceTensor } from '../device-tensor.js';
import { fusedGroupOpenedBy } from '../llama/llama-loading.js';
import type { DeviceLlamaDType, LlamaPart, LlamaStepHooks, LlamaWeightSource } from '../llama/llama-net.js';
import type { CollectiveWork, ProcessGroup } from './process-group.js';
import type { ShardLayout } from './shard-layout.js';

/** A weight as one rank holds it: its full shape, and this rank's flat shard of it. */
export interface ShardedParameter {
  readonly name: string;
  /** The full tensor's shape. */
  readonly shape: readonly number[];
  readonly dtype: DeviceLlamaDType;
  readonly layout: ShardLayout;
  /**
   * This rank's elements, kind 'weights': shape [count], or the whole tensor in its shape when the layout
   * is not sharded.
   */
  readonly shard: DeviceTensor;
}

/** A part's full weights, gathered (or being gathered) into workspace tensors. */
interface Gathered {
  readonly tensors: Map<string, DeviceTensor>;
  readonly works: CollectiveWork[];
}

/**
 * ZeRO-3's gather around each use, as a DeviceLlama pass's weight source and hooks: a part's weights (a
 * layer, the embedding, the head) are all-gathered from every rank's shard just before the pass uses them
 * and freed right after, and the next part of the pass's order is gathered while this one computes (the
 * process group's communication thread or stream), so at most two parts are whole at once. The gathered
 * tensors are accounted as 'workspace'; only the shards are 'weights'.
 */
export class LayerGather implements LlamaWeightSource, LlamaStepHooks {
  private order: readonly LlamaPart[] = [];
  private position = 0;
  private readonly inFlight = new Map<number, Gathered>();
  private readonly acquired = new Map<string, Gathered>();
  private readonly active = new Map<string, DeviceTensor>();

  /**
   * `prefetch` false gathers each part only when it is acquired (no overlap with the compute): what the
   * overlap saves is measured against it (bench/sharded-ranks.ts).
   */
  constructor(
    private readonly device: Device,
    private readonly group: ProcessGroup,
    private readonly parameters: ReadonlyMap<string, ShardedParameter>,
    private readonly namesOf: (part: LlamaPart) => readonly string[],
    private readonly prefetchNext = true,
  ) {}

  /** The gathered weight `name` while its part is acquired; a parameter that is not split is always there. */
  get(name: string): DeviceTensor | undefined {
    const p = this.parameters.get(name);
    if (p === undefined) return undefined;
    const t = this.active.get(name);
    if (t !== undefined) return t;
    if (!p.layout.sharded) return p.shard;
    throw new BadamStateError(
      `${name} is used outside its part of the pass: a sharded weight is whole only between acquire and release of its part`,
    );
  }

  begin(order: readonly LlamaPart[]): void {
    if (this.order.length > 0) this.end();
    this.order = [...order];
    this.position = 0;
    this.prefetch(0);
  }

  acquire(part: LlamaPart): void {
    const i = this.position;
    const expected = this.order[i];
    if (expected !== part)
      throw new BadamStateError(
        `the pass used ${describe(part)} where its announced order has ${expected === undefined ? 'nothing more' : describe(expected)}: every rank must gather the same parts in the same order`,
      );
    this.position += 1;
    const gathered = this.inFlight.get(i) ?? this.start(part);
    this.inFlight.delete(i);
    for (const work of gathered.works) work.wait();
    this.acquired.set(String(part), gathered);
    for (const [name, t] of gathered.tensors) this.active.set(name, t);
    // The next part's gather runs while this one computes.
    this.prefetch(this.position);
  }

  release(part: LlamaPart): void {
    const gathered = this.acquired.get(String(part));
    if (gathered === undefined) return;
    this.acquired.delete(String(part));
    for (const [name, t] of gathered.tensors) {
      if (this.active.get(name) === t) this.active.delete(name);
      t.free();
    }
  }

  end(): void {
    // A gather still in flight writes into its tensors: wait for it before freeing them.
    let failure: unknown;
    for (const gathered of this.inFlight.values()) {
      for (const work of gathered.works) {
        try {
          work.wait();
        } catch (error) {
          failure ??= error;
        }
      }
      for (const t of gathered.tensors.values()) t.free();
    }
    this.inFlight.clear();
    for (const part of [...this.acquired.keys()])
      this.release(part === 'embed' || part === 'head' ? part : Number(part));
    this.active.clear();
    this.order = [];
    this.position = 0;
    if (failure !== undefined) throw failure;
  }

  /** Starts the gather of the order's `i`-th part, unless there is none or it is under way (or not prefetching). */
  private prefetch(i: number): void {
    if (!this.prefetchNext && i > 0) return;
    const part = this.order[i];
    if (part === undefined || this.inFlight.has(i)) return;
    this.inFlight.set(i, this.start(part));
  }

  /**
   * Starts gathering a part's split weights. A fused group (a layer's q / k / v, gate / up, weights or
   * biases) with any member split is gathered into one allocation, its members consecutive as the step
   * reads them, a member that is not split copied in beside the others; a group none of whose members is
   * split is used as it is (the model packs it so at load).
   */
  private start(part: LlamaPart): Gathered {
    const tensors = new Map<string, DeviceTensor>();
    const works: CollectiveWork[] = [];
    try {
      for (const name of this.namesOf(part)) {
        const p = this.parameters.get(name);
        if (p === undefined || tensors.has(name)) continue;
        const members = (fusedGroupOpenedBy(name) ?? [name]).map((n) => this.parameters.get(n)!);
        if (!members.some((m) => m.layout.sharded)) continue;
        const total = members.reduce((sum, m) => sum + m.layout.numel, 0);
        const whole = this.device.empty([total], p.dtype, 'workspace');
        try {
          let offset = 0;
          for (const m of members) {
            const full = whole.view(offset, m.shape);
            tensors.set(m.name, full);
            offset += m.layout.numel;
            if (m.layout.sharded) works.push(this.group.allGather(m.shard, full, m.layout.counts));
            else this.device.copy(full, m.shard);
          }
        } finally {
          whole.free(); // the members' views hold the memory now
        }
      }
    } catch (error) {
      for (const w of works) w.wait();
      for (const t of tensors.values()) t.free();
      throw error;
    }
    return { tensors, works };
  }
}

function describe(part: LlamaPart): string {
  return typeof part === 'number' ? `layer ${part}` : `the ${part === 'embed' ? 'embedding' : 'head'}`;
}
