import { join } from 'node:path';
import {
  type Checkpoint,
  type CheckpointStore,
  checkpointDirName,
  type TrainerCallback,
  type TrainerContext,
} from '@badam/core';

/**
 * The ranks of a multi-process run as the runner kit needs them: who this process is, and the few host
 * collectives that keep every rank's Trainer making the same decisions (@badam/cuda's `ProcessGroup` is
 * one). Every call is collective: every rank makes it, in the same order.
 */
export interface RankGroup {
  readonly rank: number;
  readonly worldSize: number;
  /** The elementwise sum over ranks, the same on every rank. */
  allReduceSum(values: Float64Array): Float64Array;
  /** Rank `root`'s value on every rank. */
  broadcastJson<T>(value: T, root?: number): T;
  /** Returns once every rank has called it. */
  barrier(): void;
}

/**
 * Ctrl-C over several processes: every rank sees the signal at a slightly different moment, so the decision
 * to stop is taken together. After each optimizer step the ranks sum their "interrupted" flags; when any is
 * set, every rank asks for a checkpoint and stops after the same step, and exits with 130. A second Ctrl-C
 * exits at once.
 */
export class RankInterruptCallback implements TrainerCallback {
  interrupted = false;
  private stopped = false;
  private readonly handler = () => {
    if (this.interrupted) {
      if (this.group.rank === 0) this.log('BAdam: second interrupt: exiting without saving');
      process.exit(130);
    }
    this.interrupted = true;
    if (this.group.rank === 0)
      this.log(
        'BAdam: interrupted: every rank finishes the current step, then a checkpoint is saved (Ctrl-C again to quit now)',
      );
  };

  constructor(
    private readonly group: RankGroup,
    private readonly log: (message: string) => void,
  ) {}

  onTrainBegin(): void {
    process.on('SIGINT', this.handler);
  }

  onStepEnd(context: TrainerContext): void {
    const any = this.group.allReduceSum(Float64Array.of(this.interrupted ? 1 : 0))[0]! > 0;
    if (!any) return;
    this.stopped = true;
    context.control.requestSave();
    context.control.stop('interrupted');
  }

  onTrainEnd(): void {
    process.off('SIGINT', this.handler);
    if (this.stopped) process.exitCode = 130;
  }
}

/**
 * The checkpoint store of a rank other than 0: rank 0 writes every checkpoint (its snapshot holds the whole
 * model), this one only says where (the same output directory's directory core's checkpoint format names); checkpoints are read
 * from the files, by every rank.
 */
export class FollowerCheckpointStore implements CheckpointStore {
  constructor(
    private readonly outputDir: string,
    private readonly reader: CheckpointStore,
  ) {}

  async save(step: number): Promise<string> {
    return join(this.outputDir, checkpointDirName(step));
  }

  load(path?: string): Promise<Checkpoint> {
    return this.reader.load(path);
  }
}
