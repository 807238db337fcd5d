import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import {
  type Checkpoint,
  type CheckpointStore,
  isTrainerState,
  type NamedArray,
  type TrainerState,
  type TrainingSnapshot,
} from '@badam/core';
import {
  FileWriteError,
  SafetensorsError,
  SafetensorsFile,
  writeFileAtomic,
  writeSafetensors,
} from '@badam/safetensors';
import { HF_TRAINER_STATE, type HfTrainingArguments, huggingFaceTrainerState } from './hf-trainer-state.js';

/** The files of one checkpoint directory. */
export const CHECKPOINT_FILES = {
  weights: 'model.safetensors',
  optimizerTensors: 'optimizer.safetensors',
  optimizerState: 'optimizer_state.json',
  /** The trainer's own state (data position, counters, callbacks' state), what resume reads. */
  trainerState: 'badam_trainer_state.json',
  /** The same run in Hugging Face's schema, for the tools that read checkpoints (not read back). */
  hfTrainerState: HF_TRAINER_STATE,
  manifest: 'checkpoint.json',
} as const;

/** Where checkpoints before badam_trainer_state.json kept the trainer's own state; still read. */
const LEGACY_TRAINER_STATE = 'trainer_state.json';

/** A checkpoint that cannot be loaded: names the file and the problem. */
export class CheckpointError extends Error {
  override readonly name = 'CheckpointError';
}

interface Manifest {
  version: 1;
  step: number;
  /** This checkpoint's identity, and the one saved before it on its timeline (null: the first). */
  id?: string;
  parent?: string | null;
  /** When it was saved (ms since the epoch): "newest" means the last saved, not the highest step. */
  savedAt?: number;
  files: Record<string, { bytes: number; sha256: string }>;
}

/** A checkpoint directory as its manifest describes it (legacy manifests: id = folder name). */
interface Listed {
  readonly dir: string;
  readonly step: number;
  readonly id: string;
  readonly parent: string | null;
  readonly savedAt: number;
}

/** Options of a {@link SafetensorsCheckpointStore}. */
export interface CheckpointStoreOptions {
  readonly outputDir: string;
  /** Checkpoints of the current timeline to keep. Default 2. */
  readonly keepLast?: number;
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

async function sha256(path: string): Promise<{ bytes: number; sha256: string }> {
  const data = await readFile(path);
  return { bytes: data.length, sha256: createHash('sha256').update(data).digest('hex') };
}

/**
 * Checkpoints as directories `checkpoint-<step>/` in the output directory (Hugging Face's layout):
 * `model.safetensors` (weights), `optimizer.safetensors` (the active block's moments),
 * `optimizer_state.json` (BAdam's block order, position, step, RNG), `badam_trainer_state.json` (data
 * position, counters, log history), `trainer_state.json` (the same in Hugging Face's schema, for other
 * tools), the files `writeModelFiles` adds (config.json, tokenizer files) and `checkpoint.json`, a
 * manifest with each file's size and SHA-256. Checkpoints from before badam_trainer_state.json (whose
 * trainer_state.json held the trainer's own state) still load.
 *
 * A checkpoint is written into a temporary directory and renamed into place when complete, so an
 * interrupted save leaves no half checkpoint; loading verifies the manifest, so a truncated or corrupt
 * file is reported by name.
 *
 * Checkpoints form timelines: each manifest names the checkpoint saved before it (or the one the run resumed
 * from). Rotation keeps the newest `keepLast` checkpoints of the current timeline and removes the rest,
 * including those of a timeline abandoned by resuming from an earlier checkpoint (a later step is not a newer
 * checkpoint). `load()` without a path takes the newest saved checkpoint that verifies, skipping (and saying
 * so) corrupt ones.
 */
export class SafetensorsCheckpointStore implements CheckpointStore {
  readonly outputDir: string;
  readonly keepLast: number;
  private readonly logFn: (message: string) => void;
  private readonly options: CheckpointStoreOptions;
  /** The checkpoint the next save follows on its timeline: the last saved or loaded. */
  private head: string | null = null;

  constructor(options: CheckpointStoreOptions) {
    this.outputDir = options.outputDir;
    this.keepLast = options.keepLast ?? 2;
    this.logFn = options.log ?? (() => {});
    this.options = options;
    if (!Number.isSafeInteger(this.keepLast) || this.keepLast < 1) {
      throw new RangeError(`keepLast must be an integer >= 1, got ${options.keepLast}`);
    }
  }

  async save(step: number, snapshot: TrainingSnapshot, trainerState: TrainerState): Promise<string> {
    const id = randomBytes(8).toString('hex');
    const final = join(this.outputDir, `checkpoint-${step}`);
    // Errors name the checkpoint being saved, not its temporary directory.
    const failed = (error: unknown) =>
      error instanceof FileWriteError || typeof (error as NodeJS.ErrnoException)?.code !== 'string'
        ? error
        : new FileWriteError(final, (error as NodeJS.ErrnoException).code, error);
    const temp = join(this.outputDir, `.checkpoint-${step}.${randomBytes(4).toString('hex')}.tmp`);
    await mkdir(temp, { recursive: true }).catch((error: unknown) => {
      throw failed(error);
    });
    try {
      await writeSafetensors(join(temp, CHECKPOINT_FILES.weights), snapshot.weights, { format: 'pt' });
      await writeSafetensors(join(temp, CHECKPOINT_FILES.optimizerTensors), snapshot.optimizer.tensors);
      await writeFileAtomic(join(temp, CHECKPOINT_FILES.optimizerState), [
        `${JSON.stringify(snapshot.optimizer.state, null, 2)}\n`,
      ]);
      await writeFileAtomic(join(temp, CHECKPOINT_FILES.trainerState), [
        `${JSON.stringify(trainerState, null, 2)}\n`,
      ]);
      const args = this.options.trainingArguments ?? {
        loggingSteps: 0,
        evalSteps: undefined,
        saveSteps: undefined,
        trainBatchSize: 0,
        numTrainEpochs: 0,
      };
      await writeFileAtomic(join(temp, CHECKPOINT_FILES.hfTrainerState), [
        `${JSON.stringify(huggingFaceTrainerState(trainerState, args), null, 2)}\n`,
      ]);
      await this.options.writeModelFiles?.(temp);
      const manifest: Manifest = {
        version: 1,
        step,
        id,
        parent: this.head,
        savedAt: Date.now(),
        files: {},
      };
      for (const file of (await readdir(temp)).sort()) {
        manifest.files[file] = await sha256(join(temp, file));
      }
      await writeFileAtomic(join(temp, CHECKPOINT_FILES.manifest), [
        `${JSON.stringify(manifest, null, 2)}\n`,
      ]);
      // Replace an existing checkpoint of the same step (a re-run) only once the new one is complete.
      const old = `${final}.old-${randomBytes(4).toString('hex')}`;
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

  /** Checkpoint directories in the output directory, by step, lowest first. */
  async list(): Promise<string[]> {
    let names: string[];
    try {
      names = await readdir(this.outputDir);
    } catch {
      return [];
    }
    return names
      .map((n) => /^checkpoint-(\d+)$/.exec(n))
      .filter((m): m is RegExpExecArray => m !== null)
      .sort((a, b) => Number(a[1]) - Number(b[1]))
      .map((m) => join(this.outputDir, m[0]));
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
      const checkpoint = await this.verifiedLoad(path);
      this.head = (await this.describe(path))?.id ?? null;
      return checkpoint;
    }
    const listed = (await this.listed()).sort((a, b) => b.savedAt - a.savedAt || b.step - a.step);
    const unreadable = (await this.list()).filter((dir) => !listed.some((l) => l.dir === dir));
    // A checkpoint whose checkpoint.json is missing or truncated has no time to be ordered by: it is
    // skipped (it cannot verify), and named, whichever checkpoint is taken.
    const skipped: string[] = [];
    for (const dir of unreadable) {
      try {
        await this.verifiedLoad(dir);
        listed.push({ dir, step: -1, id: basename(dir), parent: null, savedAt: -1 });
      } catch (error) {
        if (!(error instanceof CheckpointError)) throw error;
        skipped.push(error.message);
      }
    }
    for (const candidate of listed.map((l) => l.dir)) {
      try {
        const checkpoint = await this.verifiedLoad(candidate);
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

  private async verifiedLoad(dir: string): Promise<Checkpoint> {
    const file = (name: string) => join(dir, name);
    let manifest: Manifest;
    try {
      manifest = JSON.parse(await readFile(file(CHECKPOINT_FILES.manifest), 'utf8')) as Manifest;
    } catch (error) {
      throw new CheckpointError(
        `${file(CHECKPOINT_FILES.manifest)}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing: the checkpoint is incomplete' : `unreadable (${(error as Error).message})`}`,
      );
    }
    checkManifestCoversFiles(manifest, await readdir(dir), file(CHECKPOINT_FILES.manifest));
    for (const [name, expected] of Object.entries(manifest.files ?? {})) {
      let actual: { bytes: number; sha256: string };
      try {
        actual = await sha256(file(name));
      } catch {
        throw new CheckpointError(`${file(name)}: missing from the checkpoint`);
      }
      if (actual.bytes !== expected.bytes) {
        throw new CheckpointError(
          `${file(name)}: ${actual.bytes} bytes, the manifest says ${expected.bytes}: truncated or replaced`,
        );
      }
      if (actual.sha256 !== expected.sha256) {
        throw new CheckpointError(
          `${file(name)}: contents do not match the manifest's SHA-256: the file is corrupt`,
        );
      }
    }
    const weights = await readAll(file(CHECKPOINT_FILES.weights));
    const tensors = await readAll(file(CHECKPOINT_FILES.optimizerTensors));
    const optimizerState = await readJson(file(CHECKPOINT_FILES.optimizerState));
    // Checkpoints saved before trainer_state.json took Hugging Face's schema kept the trainer's state there.
    const stateFile = file(
      manifest.files?.[CHECKPOINT_FILES.trainerState] !== undefined
        ? CHECKPOINT_FILES.trainerState
        : LEGACY_TRAINER_STATE,
    );
    const trainerState = await readJson(stateFile);
    if (!isTrainerState(trainerState)) {
      throw new CheckpointError(
        `${stateFile}: not a trainer state (version 1 with step, epoch and log history)`,
      );
    }
    if (trainerState.globalStep !== manifest.step) {
      throw new CheckpointError(
        `${stateFile}: step ${trainerState.globalStep}, but ${basename(dir)} is step ${manifest.step}`,
      );
    }
    return { path: dir, snapshot: { weights, optimizer: { state: optimizerState, tensors } }, trainerState };
  }

  /** A checkpoint directory's identity from its manifest; undefined when the manifest cannot be read. */
  private async describe(dir: string): Promise<Listed | undefined> {
    try {
      const manifest = JSON.parse(await readFile(join(dir, CHECKPOINT_FILES.manifest), 'utf8')) as Manifest;
      if (!Number.isSafeInteger(manifest.step)) return undefined;
      return {
        dir,
        step: manifest.step,
        id: manifest.id ?? basename(dir),
        parent: manifest.parent ?? null,
        savedAt: manifest.savedAt ?? 0,
      };
    } catch {
      return undefined;
    }
  }

  private async listed(): Promise<Listed[]> {
    const out: Listed[] = [];
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
    const listed = await this.listed();
    const byId = new Map(listed.map((l) => [l.id, l]));
    const timeline: Listed[] = [];
    for (let at = this.head; at !== null && byId.has(at) && timeline.length < listed.length; ) {
      const entry = byId.get(at)!;
      timeline.push(entry);
      at = entry.parent;
    }
    const keep = new Set(timeline.slice(0, this.keepLast).map((l) => l.dir));
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

/** The files a checkpoint cannot be resumed without (the trainer's state: either of its names). */
const NEEDED_FILES = [
  CHECKPOINT_FILES.weights,
  CHECKPOINT_FILES.optimizerTensors,
  CHECKPOINT_FILES.optimizerState,
] as const;

/**
 * Every file the checkpoint needs is in its manifest, and every file in its directory too: a manifest
 * edited to drop a file would otherwise hide that file's corruption, since only listed files are hashed.
 */
function checkManifestCoversFiles(
  manifest: Manifest,
  present: readonly string[],
  manifestPath: string,
): void {
  const listed = manifest.files ?? {};
  const needed = [
    ...NEEDED_FILES,
    listed[LEGACY_TRAINER_STATE] !== undefined && listed[CHECKPOINT_FILES.trainerState] === undefined
      ? LEGACY_TRAINER_STATE
      : CHECKPOINT_FILES.trainerState,
  ];
  const unlisted = [
    ...needed.filter((name) => listed[name] === undefined),
    ...present.filter(
      (name) =>
        name !== CHECKPOINT_FILES.manifest &&
        !name.startsWith('.') &&
        listed[name] === undefined &&
        !needed.includes(name as (typeof needed)[number]),
    ),
  ];
  if (unlisted.length > 0) {
    throw new CheckpointError(
      `${manifestPath}: does not list ${unlisted.join(', ')}, so ${unlisted.length === 1 ? 'that file' : 'those files'} cannot be checked: the manifest was edited or the checkpoint is incomplete; resume from another checkpoint`,
    );
  }
}

async function readAll(path: string): Promise<NamedArray[]> {
  let file: SafetensorsFile;
  try {
    file = await SafetensorsFile.open(path);
  } catch (error) {
    if (error instanceof SafetensorsError) throw new CheckpointError(error.message);
    throw error;
  }
  try {
    return await Promise.all(file.names().map((name) => file.read(name)));
  } finally {
    await file.close();
  }
}

async function readJson(path: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(path, 'utf8'));
  } catch (error) {
    throw new CheckpointError(`${path}: not valid JSON (${(error as Error).message})`);
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
