import type { TrainingSnapshot } from '../trainer/trainer-backend.js';
import type { TrainerState } from '../trainer/trainer-state.js';

/** A saved checkpoint as the trainer resumes from it. */
export interface Checkpoint {
  /** Where it was stored (a directory for the safetensors store). */
  readonly path: string;
  readonly snapshot: TrainingSnapshot;
  readonly trainerState: TrainerState;
}

/**
 * Where the trainer saves checkpoints and finds them again. `@badam/callbacks` implements it with
 * safetensors files written atomically, keeping the last N.
 */
export interface CheckpointStore {
  save(step: number, snapshot: TrainingSnapshot, trainerState: TrainerState): Promise<string>;
  load(path?: string): Promise<Checkpoint>;
}
