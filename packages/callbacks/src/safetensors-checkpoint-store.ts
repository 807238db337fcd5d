import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import {
  type Checkpoint,
  type CheckpointStore,
  checkpointDirName,
  checkpointStepOf,
  checkpointTempDirName,
  checkpointTimeline,
  type ListedCheckpoint,
  listedCheckpoint,
  type NamedArray,
  newestFirst,
  replacedCheckpointDirName,
  type TrainerState,
  type TrainingSnapshot,
} from '@badam/core';
import { FileWriteError } from '@badam/safetensors';
import {
  CheckpointError,
  readCheckpointDirectory,
  readCheckpointManifest,
  readCheckpointWeights,
  writeCheckpointDirectory,
} from './checkpoint-directory.js';
import type { HfTrainingArguments } from './hf-trainer-state.js';

/** Hugging Face's trainer_state.json's training arguments when the run gives none: nulls and zeros. */
const NO_TRAINING_ARGUMENTS: HfTrainingArguments = {
  loggingSteps: 0,
  evalSteps: undefined,
  saveSteps: undefined,
  trainBatchSize: 0,
  numTrainEpochs: 0,
};

/** Options of a {@link SafetensorsCheckpointStore}. */
export interface CheckpointStoreOptions {
  readonly outputDir: string;
  /** Checkpoints of the current timeline to keep (`Infinity`: all). Default 2. */
  readonly keepLast?: number;
  /**
   * Storage dtype of `model.safetensors`' weights. Default: as the snapshot holds them (fp32). A backend
   * whose weights are bf16 (or fp16) saves them in that dtype, exactly and at half the size; loading widens
   * them to fp32 again.
   */
  readonly weightsDtype?: 'float32' | 'bfloat16' | 'float16';
  /**
   * Save the model only, as Hugging Face's `save_only_model`: no optimizer tensors or state, so a checkpoint
   * is smaller but cannot be resumed from (loading it says so); it still loads as a model folder.
   */
  readonly modelOnly?: boolean;
  /** Where the store says what it skipped or removed (a corrupt checkpoint, an abandoned timeline). */
  readonly log?: (message: string) => void;
  /** The training arguments Hugging Face's trainer_state.json repeats (absent: nulls and zeros). */
  readonly trainingArguments?: HfTrainingArguments;
  /**
   * Writes more files into a checkpoint being saved (its directory is given), such as the model's
   * config.json and tokenizer files that make `checkpoint-N/` a model folder of its own. They are part of
   * the manifest like the store's own files.
   */
  readonly writeModelFiles?: (directory: string) => Promise<void>;
}

/**
 * Checkpoints as directories `checkpoint-<step>/` in the output directory, in the format core's
 * `checkpoint-format.ts` describes (`CHECKPOINT_FILES`: weights, the optimizer's tensors and state, the
 * trainer's state in BAdam's and Hugging Face's schema, the files `writeModelFiles` adds, and the
 * `checkpoint.json` manifest with each file's size and SHA-256). Checkpoints from before
 * badam_trainer_state.json (whose trainer_state.json held the trainer's own state) still load.
 *
 * A checkpoint is written into a temporary directory and renamed into place when complete, so an
 * interrupted save leaves no half checkpoint; loading verifies the manifest, so a truncated or corrupt
 * file is reported by name.
 *
 * Checkpoints form timelines: each manifest names the checkpoint saved before it (or the one the run resumed
 * from). Rotation keeps the newest `keepLast` checkpoints of the current timeline and removes the rest,
 * including those of a timeline abandoned by resuming from an earlier checkpoint (a later step is not a newer
 * checkpoint); `protect()` keeps one more (the best). `load()` without a path takes the newest saved
 * checkpoint that verifies, skipping (and saying so) corrupt ones. `modelOnly` checkpoints hold no optimizer
 * state (they cannot be resumed from; `loadWeights()` reads them), and `weightsDtype` stores the weights as
 * bf16 / fp16.
 */
export class SafetensorsCheckpointStore implements CheckpointStore {
  readonly outputDir: string;
  readonly keepLast: number;
  private readonly logFn: (message: string) => void;
  private readonly options: CheckpointStoreOptions;
  /** The checkpoint the next save follows on its timeline: the last saved or loaded. */
  private head: string | null = null;
  /** A checkpoint rotation keeps whatever `keepLast` says (the best one, as Hugging Face keeps it). */
  private protectedDir: string | undefined;

  constructor(options: CheckpointStoreOptions) {
    this.outputDir = options.outputDir;
    this.keepLast = options.keepLast ?? 2;
    this.logFn = options.log ?? (() => {});
    this.options = options;
    const all = this.keepLast === Number.POSITIVE_INFINITY;
    if (!all && (!Number.isSafeInteger(this.keepLast) || this.keepLast < 1)) {
      throw new RangeError(`keepLast must be an integer >= 1, got ${options.keepLast}`);
    }
  }

  async save(step: number, snapshot: TrainingSnapshot, trainerState: TrainerState): Promise<string> {
    const id = randomBytes(8).toString('hex');
    const final = join(this.outputDir, checkpointDirName(step));
    // Errors name the checkpoint being saved, not its temporary directory.
    const failed = (error: unknown) =>
      error instanceof FileWriteError || typeof (error as NodeJS.ErrnoException)?.code !== 'string'
        ? error
        : new FileWriteError(final, (error as NodeJS.ErrnoException).code, error);
    const temp = join(this.outputDir, checkpointTempDirName(step, randomBytes(4).toString('hex')));
    await mkdir(temp, { recursive: true }).catch((error: unknown) => {
      throw failed(error);
    });
    try {
      await writeCheckpointDirectory(temp, snapshot, trainerState, {
        step,
        id,
        parent: this.head,
        trainingArguments: this.options.trainingArguments ?? NO_TRAINING_ARGUMENTS,
        writeModelFiles: this.options.writeModelFiles,
        weightsDtype: this.options.weightsDtype,
        modelOnly: this.options.modelOnly,
      });
      // Replace an existing checkpoint of the same step (a re-run) only once the new one is complete.
      const old = join(this.outputDir, replacedCheckpointDirName(step, randomBytes(4).toString('hex')));
      const replacing = await exists(final);
      if (replacing) await rename(final, old);
      await rename(temp, final);
      if (replacing) await rm(old, { recursive: true, force: true });
    } catch (error) {
      await rm(temp, { recursive: true, force: true });
      throw failed(error);
    }
    this.head = id;
    await this.prune();
    return final;
  }

  /**
   * Keeps checkpoint `dir` through rotation beyond `keepLast` (Hugging Face keeps the best checkpoint of
   * `load_best_model_at_end` so); undefined protects none again.
   */
  protect(dir: string | undefined): void {
    this.protectedDir = dir;
  }

  /** Checkpoint directories in the output directory, by step, lowest first. */
  async list(): Promise<string[]> {
    let names: string[];
    try {
      names = await readdir(this.outputDir);
    } catch {
      return [];
    }
    return names
      .map((name) => ({ name, step: checkpointStepOf(name) }))
      .filter((c): c is { name: string; step: number } => c.step !== undefined)
      .sort((a, b) => a.step - b.step)
      .map((c) => join(this.outputDir, c.name));
  }

  /**
   * Loads `path` (a checkpoint directory), or the newest saved checkpoint in the output directory that
   * verifies; corrupt ones passed over are reported through `log`. Later saves continue its timeline.
   */
  async load(path?: string): Promise<Checkpoint> {
    if (path !== undefined) {
      const info = await stat(path).catch((error: NodeJS.ErrnoException) => error.code ?? 'ENOENT');
      if (info === 'ELOOP')
        throw new CheckpointError(`${path} is a symbolic link that loops (ELOOP): point it at a checkpoint`);
      if (typeof info === 'string')
        throw new CheckpointError(
          `${path} does not exist: give a checkpoint-<step> directory of an earlier run, or true for the newest in the output directory`,
        );
      if (!info.isDirectory())
        throw new CheckpointError(`${path} is a file: a checkpoint is a checkpoint-<step> directory`);
      const checkpoint = await readCheckpointDirectory(path);
      this.head = (await this.describe(path))?.id ?? null;
      return checkpoint;
    }
    const listed = newestFirst(await this.listed());
    const unreadable = (await this.list()).filter((dir) => !listed.some((l) => l.dir === dir));
    // A checkpoint whose checkpoint.json is missing or truncated has no time to be ordered by: it is
    // skipped (it cannot verify), and named, whichever checkpoint is taken.
    const skipped: string[] = [];
    for (const dir of unreadable) {
      try {
        await readCheckpointDirectory(dir);
        listed.push({ dir, step: -1, id: basename(dir), parent: null, savedAt: -1 });
      } catch (error) {
        if (!(error instanceof CheckpointError)) throw error;
        skipped.push(error.message);
      }
    }
    for (const candidate of listed.map((l) => l.dir)) {
      try {
        const checkpoint = await readCheckpointDirectory(candidate);
        for (const message of skipped) this.logFn(`skipped a corrupt checkpoint: ${message}`);
        this.head = listed.find((l) => l.dir === candidate)?.id ?? null;
        return checkpoint;
      } catch (error) {
        if (!(error instanceof CheckpointError)) throw error;
        skipped.push(error.message);
      }
    }
    if (skipped.length > 0)
      throw new CheckpointError(
        `${this.outputDir}: no checkpoint verifies (${skipped.join('; ')}): resume from a good copy, or start again with --overwrite_output_dir`,
      );
    throw new CheckpointError(`${this.outputDir}: no checkpoint-<step> directory to resume from`);
  }

  /**
   * The weights of checkpoint `dir` (verified against its manifest), as fp32, whether or not it can be
   * resumed from: what loading the best checkpoint at the end of a run needs.
   */
  async loadWeights(dir: string): Promise<NamedArray[]> {
    return readCheckpointWeights(dir);
  }

  /** A checkpoint directory's place on its timeline; undefined when its manifest cannot be read. */
  private async describe(dir: string): Promise<ListedCheckpoint | undefined> {
    return listedCheckpoint(dir, basename(dir), await readCheckpointManifest(dir));
  }

  private async listed(): Promise<ListedCheckpoint[]> {
    const out: ListedCheckpoint[] = [];
    for (const dir of await this.list()) {
      const listed = await this.describe(dir);
      if (listed !== undefined) out.push(listed);
    }
    return out;
  }

  /**
   * Keeps the newest `keepLast` checkpoints of the current timeline (the last save and its ancestors) and
   * removes every other checkpoint directory: older ones of this timeline, and those of a timeline the run
   * left by resuming from an earlier checkpoint.
   */
  private async prune(): Promise<void> {
    const timeline = checkpointTimeline(await this.listed(), this.head);
    const keep = new Set(timeline.slice(0, this.keepLast).map((l) => l.dir));
    const kept = timeline.find((l) => l.dir === this.protectedDir);
    if (kept !== undefined) keep.add(kept.dir);
    const current = new Set(timeline.map((l) => l.dir));
    for (const dir of await this.list()) {
      if (keep.has(dir)) continue;
      if (!current.has(dir))
        this.logFn(
          `removed ${basename(dir)}: not on this run's timeline (it resumed from an earlier checkpoint)`,
        );
      await rm(dir, { recursive: true, force: true });
    }
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
