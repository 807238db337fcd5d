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
import { SafetensorsError, SafetensorsFile, writeFileAtomic, writeSafetensors } from '@badam/safetensors';

/** The files of one checkpoint directory. */
export const CHECKPOINT_FILES = {
  weights: 'model.safetensors',
  optimizerTensors: 'optimizer.safetensors',
  optimizerState: 'optimizer_state.json',
  trainerState: 'trainer_state.json',
  manifest: 'checkpoint.json',
} as const;

/** A checkpoint that cannot be loaded: names the file and the problem. */
export class CheckpointError extends Error {
  override readonly name = 'CheckpointError';
}

interface Manifest {
  version: 1;
  step: number;
  files: Record<string, { bytes: number; sha256: string }>;
}

async function sha256(path: string): Promise<{ bytes: number; sha256: string }> {
  const data = await readFile(path);
  return { bytes: data.length, sha256: createHash('sha256').update(data).digest('hex') };
}

/**
 * Checkpoints as directories `checkpoint-<step>/` in the output directory (Hugging Face's layout):
 * `model.safetensors` (weights), `optimizer.safetensors` (the active block's moments),
 * `optimizer_state.json` (BAdam's block order, position, step, RNG), `trainer_state.json` (data position,
 * counters, log history) and `checkpoint.json`, a manifest with each file's size and SHA-256.
 *
 * A checkpoint is written into a temporary directory and renamed into place when complete, so an
 * interrupted save leaves no half checkpoint; loading verifies the manifest, so a truncated or corrupt
 * file is reported by name. Only the last `keepLast` checkpoints are kept.
 */
export class SafetensorsCheckpointStore implements CheckpointStore {
  readonly outputDir: string;
  readonly keepLast: number;

  constructor(options: { outputDir: string; keepLast?: number }) {
    this.outputDir = options.outputDir;
    this.keepLast = options.keepLast ?? 2;
    if (!Number.isSafeInteger(this.keepLast) || this.keepLast < 1) {
      throw new RangeError(`keepLast must be an integer >= 1, got ${options.keepLast}`);
    }
  }

  async save(step: number, snapshot: TrainingSnapshot, trainerState: TrainerState): Promise<string> {
    await mkdir(this.outputDir, { recursive: true });
    const final = join(this.outputDir, `checkpoint-${step}`);
    const temp = join(this.outputDir, `.checkpoint-${step}.${randomBytes(4).toString('hex')}.tmp`);
    await mkdir(temp, { recursive: true });
    try {
      await writeSafetensors(join(temp, CHECKPOINT_FILES.weights), snapshot.weights, { format: 'pt' });
      await writeSafetensors(join(temp, CHECKPOINT_FILES.optimizerTensors), snapshot.optimizer.tensors);
      await writeFileAtomic(join(temp, CHECKPOINT_FILES.optimizerState), [
        `${JSON.stringify(snapshot.optimizer.state, null, 2)}\n`,
      ]);
      await writeFileAtomic(join(temp, CHECKPOINT_FILES.trainerState), [
        `${JSON.stringify(trainerState, null, 2)}\n`,
      ]);
      const manifest: Manifest = { version: 1, step, files: {} };
      for (const file of [
        CHECKPOINT_FILES.weights,
        CHECKPOINT_FILES.optimizerTensors,
        CHECKPOINT_FILES.optimizerState,
        CHECKPOINT_FILES.trainerState,
      ]) {
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
      throw error;
    }
    await this.prune();
    return final;
  }

  /** Checkpoint directories in the output directory, oldest first. */
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

  /** Loads `path` (a checkpoint directory), or the latest one in the output directory. */
  async load(path?: string): Promise<Checkpoint> {
    const dir = path ?? (await this.list()).at(-1);
    if (dir === undefined)
      throw new CheckpointError(`${this.outputDir}: no checkpoint-<step> directory to resume from`);
    const file = (name: string) => join(dir, name);
    let manifest: Manifest;
    try {
      manifest = JSON.parse(await readFile(file(CHECKPOINT_FILES.manifest), 'utf8')) as Manifest;
    } catch (error) {
      throw new CheckpointError(
        `${file(CHECKPOINT_FILES.manifest)}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing: the checkpoint is incomplete' : `unreadable (${(error as Error).message})`}`,
      );
    }
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
    const trainerState = await readJson(file(CHECKPOINT_FILES.trainerState));
    if (!isTrainerState(trainerState)) {
      throw new CheckpointError(
        `${file(CHECKPOINT_FILES.trainerState)}: not a trainer state (version 1 with step, epoch and log history)`,
      );
    }
    if (trainerState.globalStep !== manifest.step) {
      throw new CheckpointError(
        `${file(CHECKPOINT_FILES.trainerState)}: step ${trainerState.globalStep}, but ${basename(dir)} is step ${manifest.step}`,
      );
    }
    return { path: dir, snapshot: { weights, optimizer: { state: optimizerState, tensors } }, trainerState };
  }

  private async prune(): Promise<void> {
    const all = await this.list();
    for (const dir of all.slice(0, Math.max(0, all.length - this.keepLast)))
      await rm(dir, { recursive: true, force: true });
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
