import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import {
  CHECKPOINT_FILES,
  type Checkpoint,
  type CheckpointFileDigest,
  type CheckpointManifest,
  checkpointJson,
  checkpointManifest,
  isTrainerState,
  type NamedArray,
  type TrainerState,
  type TrainingSnapshot,
  trainerStateFileOf,
  unlistedCheckpointFiles,
} from '@badam/core';
import { SafetensorsError, SafetensorsFile, writeFileAtomic, writeSafetensors } from '@badam/safetensors';
import { type HfTrainingArguments, huggingFaceTrainerState } from './hf-trainer-state.js';

/** A checkpoint that cannot be loaded: names the file and the problem. */
export class CheckpointError extends Error {
  override readonly name = 'CheckpointError';
}

/** What {@link writeCheckpointDirectory} writes besides the snapshot and the trainer state. */
export interface CheckpointWriteOptions {
  readonly step: number;
  /** The checkpoint's identity and the one before it on its timeline (null: the first). */
  readonly id: string;
  readonly parent: string | null;
  /** The training arguments Hugging Face's trainer_state.json repeats. */
  readonly trainingArguments: HfTrainingArguments;
  /** Writes the run's own files into the directory (config.json, tokenizer files); the manifest lists them. */
  readonly writeModelFiles?: ((directory: string) => Promise<void>) | undefined;
}

async function digest(path: string): Promise<CheckpointFileDigest> {
  const data = await readFile(path);
  return { bytes: data.length, sha256: createHash('sha256').update(data).digest('hex') };
}

/**
 * Writes a checkpoint's files into `directory` (empty, made by the caller): the weights, the optimizer's
 * tensors and state, the trainer's state (BAdam's and Hugging Face's schema), the run's own files, and last
 * the manifest with every file's size and SHA-256. The checkpoint format's one writer: each file is written
 * atomically, and the caller renames the directory into place once this returns.
 */
export async function writeCheckpointDirectory(
  directory: string,
  snapshot: TrainingSnapshot,
  trainerState: TrainerState,
  options: CheckpointWriteOptions,
): Promise<void> {
  const path = (name: string) => join(directory, name);
  await writeSafetensors(path(CHECKPOINT_FILES.weights), snapshot.weights, { format: 'pt' });
  await writeSafetensors(path(CHECKPOINT_FILES.optimizerTensors), snapshot.optimizer.tensors);
  await writeFileAtomic(path(CHECKPOINT_FILES.optimizerState), [checkpointJson(snapshot.optimizer.state)]);
  await writeFileAtomic(path(CHECKPOINT_FILES.trainerState), [checkpointJson(trainerState)]);
  await writeFileAtomic(path(CHECKPOINT_FILES.hfTrainerState), [
    checkpointJson(huggingFaceTrainerState(trainerState, options.trainingArguments)),
  ]);
  await options.writeModelFiles?.(directory);
  const files: Record<string, CheckpointFileDigest> = {};
  for (const file of (await readdir(directory)).sort()) files[file] = await digest(path(file));
  const manifest = checkpointManifest({
    step: options.step,
    id: options.id,
    parent: options.parent,
    savedAt: Date.now(),
    files,
  });
  await writeFileAtomic(path(CHECKPOINT_FILES.manifest), [checkpointJson(manifest)]);
}

/** A checkpoint directory's manifest as written; undefined when it is missing or not JSON. */
export async function readCheckpointManifest(directory: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(join(directory, CHECKPOINT_FILES.manifest), 'utf8'));
  } catch {
    return undefined;
  }
}

/**
 * Reads the checkpoint in `directory` after verifying it: its manifest lists every file the checkpoint
 * needs and every file in the directory, and each listed file has the size and SHA-256 the manifest says;
 * the trainer's state is one, of the manifest's step. The checkpoint format's one reader.
 *
 * @throws CheckpointError naming the file and what is wrong with it.
 */
export async function readCheckpointDirectory(directory: string): Promise<Checkpoint> {
  const file = (name: string) => join(directory, name);
  const manifestPath = file(CHECKPOINT_FILES.manifest);
  let manifest: CheckpointManifest;
  try {
    manifest = JSON.parse(await readFile(manifestPath, 'utf8')) as CheckpointManifest;
  } catch (error) {
    throw new CheckpointError(
      `${manifestPath}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing: the checkpoint is incomplete' : `unreadable (${(error as Error).message})`}`,
    );
  }
  if (typeof manifest !== 'object' || manifest === null) {
    throw new CheckpointError(`${manifestPath}: not a checkpoint manifest (an object with step and files)`);
  }
  const unlisted = unlistedCheckpointFiles(manifest, await readdir(directory));
  if (unlisted.length > 0) {
    throw new CheckpointError(
      `${manifestPath}: does not list ${unlisted.join(', ')}, so ${unlisted.length === 1 ? 'that file' : 'those files'} cannot be checked: the manifest was edited or the checkpoint is incomplete; resume from another checkpoint`,
    );
  }
  for (const [name, expected] of Object.entries(manifest.files ?? {})) {
    let actual: CheckpointFileDigest;
    try {
      actual = await digest(file(name));
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
  const stateFile = file(trainerStateFileOf(manifest));
  const trainerState = await readJson(stateFile);
  if (!isTrainerState(trainerState)) {
    throw new CheckpointError(
      `${stateFile}: not a trainer state (version 1 with step, epoch and log history)`,
    );
  }
  if (trainerState.globalStep !== manifest.step) {
    throw new CheckpointError(
      `${stateFile}: step ${trainerState.globalStep}, but ${basename(directory)} is step ${manifest.step}`,
    );
  }
  return {
    path: directory,
    snapshot: { weights, optimizer: { state: optimizerState, tensors } },
    trainerState,
  };
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
