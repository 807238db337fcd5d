import type { LogEntry } from './trainer-callback.js';

/**
 * The trainer's own resumable state (saved as `badam_trainer_state.json` in checkpoints): where in the data the
 * run stands, counters, and the log history.
 */
export interface TrainerState {
  readonly version: 1;
  /** Optimizer steps done. */
  globalStep: number;
  /** Optimizer steps of the whole run. */
  maxSteps: number;
  /** The epoch being read (0-based). */
  epoch: number;
  /** Micro-batches of `epoch` already consumed. */
  microBatchInEpoch: number;
  /** Micro-batches per epoch, when known. */
  epochLength: number | undefined;
  tokensSeen: number;
  /** Wall time of all sessions of this run. */
  elapsedMs: number;
  /** Micro-batches skipped by a loss verdict, and the current run of consecutive ones. */
  skippedMicroBatches: number;
  /** Every logged entry (the loss curve). */
  logHistory: LogEntry[];
  /** Callbacks' saved state, by their `stateKey`. */
  callbacks: Record<string, unknown>;
}

/** A trainer state saved at `checkpoint` (what a checkpoint store hands back for resume). */
export function isTrainerState(value: unknown): value is TrainerState {
  const s = value as Partial<TrainerState> | null;
  return (
    typeof s === 'object' &&
    s !== null &&
    s.version === 1 &&
    Number.isSafeInteger(s.globalStep) &&
    Number.isSafeInteger(s.epoch) &&
    Number.isSafeInteger(s.microBatchInEpoch) &&
    Array.isArray(s.logHistory)
  );
}
