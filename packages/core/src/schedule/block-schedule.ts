import { BadamOptionError, BadamStateError } from '../errors.js';
import { SeededRandom } from '../random.js';
import { requireInteger, requireOneOf } from '../validation.js';

/**
 * Order in which blocks take turns:
 * - `ascending`: start, start+1, ..., D-1, 0, 1, ... (start defaults to 0);
 * - `descending`: start, start-1, ..., 0, D-1, ... (start defaults to D-1);
 * - `random`: every block epoch (D consecutive blocks) is a fresh random permutation — random
 *   reshuffling — drawn from a seeded generator; with `startBlock` the first epoch begins with it;
 * - `fixed`: the start block (default 0) for the whole run; every K steps a new sub-problem starts on it
 *   (fresh optimizer state, masters made again from the weights), as the reference does.
 */
export type SwitchMode = 'ascending' | 'descending' | 'random' | 'fixed';

/** All switch modes, for validation and CLI help. */
export const SWITCH_MODES: readonly SwitchMode[] = ['ascending', 'descending', 'random', 'fixed'];

/** Options of a {@link BlockSchedule}. */
export interface BlockScheduleOptions {
  /** Number of blocks D (>= 1). */
  blockCount: number;
  /** Order of the blocks. Default `'ascending'`. */
  switchMode?: SwitchMode;
  /** K: optimizer steps each block gets before the next one takes over; -1 never switches. Default 50. */
  switchBlockEvery?: number;
  /** The first block, 0-based, honoured in every mode. */
  startBlock?: number;
  /** Seed of the `random` order. Default 42. */
  seed?: number;
}

/** Plain-data state of a {@link BlockSchedule}, from {@link BlockSchedule.state}. */
export interface BlockScheduleState {
  readonly version: 1;
  readonly switchMode: SwitchMode;
  readonly blockCount: number;
  readonly switchBlockEvery: number;
  readonly seed: number;
  /** Completed block epochs. */
  readonly blockEpoch: number;
  /** The current epoch's order. */
  readonly order: readonly number[];
  /** Position of the current block in `order`. */
  readonly position: number;
  /** Optimizer steps the current block has had. */
  readonly stepsInBlock: number;
  /** State of the generator that draws the next random epoch. */
  readonly rng: readonly [number, number, number, number];
}

/** What {@link BlockSchedule.advance} did. */
export interface ScheduleAdvance {
  /** True when the step completed the block's K steps and another block (or the same one in a new epoch) took over. */
  readonly switched: boolean;
  /**
   * True in `fixed` mode when the step completed K steps: the same block starts a new sub-problem (fresh
   * optimizer state, masters made again from the weights) without a switch.
   */
  readonly restarted: boolean;
  /** The block the step was taken on. */
  readonly from: number;
  /** The block active after the step. */
  readonly to: number;
}

/**
 * Which block is active at every optimizer step: every block gets exactly K = `switchBlockEvery`
 * optimizer steps (the first block included: the reference gives it K-1), in the order the switch mode
 * says. The whole state is plain data, so a resumed run continues the identical order.
 *
 * @example
 * ```ts
 * const schedule = new BlockSchedule({ blockCount: 4, switchMode: 'random', switchBlockEvery: 2, seed: 7 });
 * for (let step = 0; step < 8; step++) {
 *   const block = schedule.currentBlock; // train this block...
 *   schedule.advance();                   // ...then record the step
 * }
 * ```
 */
export class BlockSchedule {
  readonly switchMode: SwitchMode;
  readonly blockCount: number;
  readonly switchBlockEvery: number;
  readonly seed: number;
  private rng: SeededRandom;
  private order: number[];
  private position = 0;
  private epoch = 0;
  private steps = 0;

  constructor(options: BlockScheduleOptions) {
    const { blockCount, switchMode = 'ascending', switchBlockEvery = 50, startBlock, seed = 42 } = options;
    this.blockCount = requireInteger('blockCount', blockCount, { min: 1 });
    this.switchMode = requireOneOf('switchMode', switchMode, SWITCH_MODES);
    this.switchBlockEvery = validateSwitchBlockEvery(switchBlockEvery);
    this.seed = requireInteger('seed', seed, { min: 0 });
    if (startBlock !== undefined) requireInteger('startBlock', startBlock, { min: 0, max: blockCount - 1 });
    this.rng = SeededRandom.fromSeed(this.seed);
    this.order = this.firstEpochOrder(startBlock);
  }

  /** Rebuilds a schedule from {@link BlockSchedule.state}; it continues exactly where the saved one stood. */
  static fromState(state: BlockScheduleState): BlockSchedule {
    if (typeof state !== 'object' || state === null || state.version !== 1) {
      throw new BadamStateError(
        `block schedule state must be an object with version 1, got ${JSON.stringify(state)}`,
      );
    }
    const schedule = new BlockSchedule({
      blockCount: state.blockCount,
      switchMode: state.switchMode,
      switchBlockEvery: state.switchBlockEvery,
      seed: state.seed,
    });
    const { order, position, stepsInBlock, blockEpoch } = state;
    const expectedLength = schedule.switchMode === 'fixed' ? 1 : schedule.blockCount;
    const isPermutation =
      Array.isArray(order) &&
      order.length === expectedLength &&
      new Set(order).size === order.length &&
      order.every((b) => Number.isInteger(b) && b >= 0 && b < schedule.blockCount);
    if (!isPermutation) {
      throw new BadamStateError(
        `block schedule state has order ${JSON.stringify(order)}, which is not a valid order of ${state.blockCount} blocks`,
      );
    }
    const stepsLimit =
      schedule.switchBlockEvery === -1 ? Number.MAX_SAFE_INTEGER : schedule.switchBlockEvery - 1;
    if (!Number.isInteger(position) || position < 0 || position >= order.length) {
      throw new BadamStateError(
        `block schedule state position ${position} is outside 0..${order.length - 1}`,
      );
    }
    if (!Number.isInteger(stepsInBlock) || stepsInBlock < 0 || stepsInBlock > stepsLimit) {
      throw new BadamStateError(
        `block schedule state stepsInBlock ${stepsInBlock} is outside 0..${stepsLimit}`,
      );
    }
    if (!Number.isInteger(blockEpoch) || blockEpoch < 0) {
      throw new BadamStateError(
        `block schedule state blockEpoch ${blockEpoch} is not a non-negative integer`,
      );
    }
    schedule.rng = SeededRandom.fromState(state.rng);
    schedule.order = [...order];
    schedule.position = position;
    schedule.steps = stepsInBlock;
    schedule.epoch = blockEpoch;
    return schedule;
  }

  /** The block to train now. */
  get currentBlock(): number {
    return this.order[this.position]!;
  }

  /** Optimizer steps the current block has had so far. */
  get stepsInBlock(): number {
    return this.steps;
  }

  /** Completed block epochs (an epoch = every block once; in `fixed` mode one K-step period). */
  get blockEpoch(): number {
    return this.epoch;
  }

  /** The blocks still to come in the current epoch, the current one first. */
  remainingInEpoch(): number[] {
    return this.order.slice(this.position);
  }

  /**
   * Records one optimizer step on the current block. After the K-th step of a block the next block in the
   * order becomes current; after the last block of an epoch a new epoch's order is drawn.
   */
  advance(): ScheduleAdvance {
    const from = this.currentBlock;
    this.steps += 1;
    if (this.switchBlockEvery === -1 || this.steps < this.switchBlockEvery) {
      return { switched: false, restarted: false, from, to: from };
    }
    this.steps = 0;
    this.position += 1;
    if (this.position >= this.order.length) {
      this.epoch += 1;
      this.position = 0;
      this.order = this.nextEpochOrder();
    }
    const to = this.currentBlock;
    const fixed = this.switchMode === 'fixed';
    return { switched: !fixed, restarted: fixed, from, to };
  }

  /** Plain-data state for checkpoints; see {@link BlockSchedule.fromState}. */
  state(): BlockScheduleState {
    return {
      version: 1,
      switchMode: this.switchMode,
      blockCount: this.blockCount,
      switchBlockEvery: this.switchBlockEvery,
      seed: this.seed,
      blockEpoch: this.epoch,
      order: [...this.order],
      position: this.position,
      stepsInBlock: this.steps,
      rng: this.rng.state(),
    };
  }

  private firstEpochOrder(startBlock: number | undefined): number[] {
    const d = this.blockCount;
    switch (this.switchMode) {
      case 'ascending': {
        const s = startBlock ?? 0;
        return Array.from({ length: d }, (_, i) => (s + i) % d);
      }
      case 'descending': {
        const s = startBlock ?? d - 1;
        return Array.from({ length: d }, (_, i) => (s - i + d) % d);
      }
      case 'fixed':
        return [startBlock ?? 0];
      case 'random': {
        if (startBlock === undefined) return this.rng.permutation(d);
        const rest = Array.from({ length: d }, (_, i) => i).filter((b) => b !== startBlock);
        return [startBlock, ...this.rng.shuffle(rest)];
      }
    }
  }

  private nextEpochOrder(): number[] {
    // Ascending and descending continue cyclically from where the last epoch ended, so the order is the same.
    return this.switchMode === 'random' ? this.rng.permutation(this.blockCount) : this.order;
  }
}

/** Validates K: an integer >= 1, or -1 for never switching. */
export function validateSwitchBlockEvery(value: unknown, option = 'switchBlockEvery'): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || (value < 1 && value !== -1)) {
    throw new BadamOptionError(option, value, 'an integer >= 1, or -1 to never switch');
  }
  return value;
}
