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
import {
  bfloat16ToFloat32,
  float16ToFloat32,
  float32ToBfloat16,
  float32ToFloat16,
  SafetensorsError,
  SafetensorsFile,
  writeFileAtomic,
  writeSafetensors,
} from '@badam/safetensors';
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
  /** Storage dtype of the weights (fp32 values rounded to bf16 / fp16). Default: as the snapshot holds them. */
  readonly weightsDtype?: 'float32' | 'bfloat16' | 'float16' | undefined;
  /** Write the model only (no optimizer tensors or state): the manifest marks it `modelOnly`. */
  readonly modelOnly?: boolean | undefined;
}

async function digest(path: string): Promise<CheckpointFileDigest> {
  const data = await readFile(path);
  return { bytes: data.length, sha256: createHash('sha256').update(data).digest('hex') };
}

/**
 * Writes a checkpoint's files into `directory` (empty, made by the caller): the weights (in
 * `weightsDtype`), the optimizer's tensors and state (not for `modelOnly`), the trainer's state (BAdam's and Hugging Face's schema), the run's own files, and last
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
  await writeSafetensors(
    path(CHECKPOINT_FILES.weights),
    snapshot.weights.map((w) => storedAs(w, options.weightsDtype)),
    { format: 'pt' },
  );
  if (options.modelOnly !== true) {
    await writeSafetensors(path(CHECKPOINT_FILES.optimizerTensors), snapshot.optimizer.tensors);
    await writeFileAtomic(path(CHECKPOINT_FILES.optimizerState), [checkpointJson(snapshot.optimizer.state)]);
  }
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
    modelOnly: options.modelOnly === true,
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

/** The manifest of the checkpoint in `directory`, or a CheckpointError saying why there is none. */
async function manifestOf(directory: string): Promise<CheckpointManifest> {
  const manifestPath = join(directory, CHECKPOINT_FILES.manifest);
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
  return manifest;
}

/** Checks one listed file's size and SHA-256 against the manifest's. */
async function verifyFile(path: string, expected: CheckpointFileDigest): Promise<void> {
  let actual: CheckpointFileDigest;
  try {
    actual = await digest(path);
  } catch {
    throw new CheckpointError(`${path}: missing from the checkpoint`);
  }
  if (actual.bytes !== expected.bytes) {
    throw new CheckpointError(
      `${path}: ${actual.bytes} bytes, the manifest says ${expected.bytes}: truncated or replaced`,
    );
  }
  if (actual.sha256 !== expected.sha256) {
    throw new CheckpointError(`${path}: contents do not match the manifest's SHA-256: the file is corrupt`);
  }
}

/**
 * Reads the checkpoint in `directory` after verifying it: its manifest lists every file the checkpoint
 * needs and every file in the directory, and each listed file has the size and SHA-256 the manifest says;
 * the trainer's state is one, of the manifest's step. Weights stored as bf16 / fp16 come back as fp32
 * (exactly). The checkpoint format's one reader.
 *
 * @throws CheckpointError naming the file and what is wrong with it, or saying that a model-only checkpoint
 * cannot be resumed from.
 */
export async function readCheckpointDirectory(directory: string): Promise<Checkpoint> {
  const file = (name: string) => join(directory, name);
  const manifestPath = file(CHECKPOINT_FILES.manifest);
  const manifest = await manifestOf(directory);
  const unlisted = unlistedCheckpointFiles(manifest, await readdir(directory));
  if (unlisted.length > 0) {
    throw new CheckpointError(
      `${manifestPath}: does not list ${unlisted.join(', ')}, so ${unlisted.length === 1 ? 'that file' : 'those files'} cannot be checked: the manifest was edited or the checkpoint is incomplete; resume from another checkpoint`,
    );
  }
  for (const [name, expected] of Object.entries(manifest.files ?? {})) {
    await verifyFile(file(name), expected);
  }
  if (manifest.modelOnly === true) {
    throw new CheckpointError(
      `${directory} was saved with --save_only_model: it holds the model but no optimizer state, so a run cannot resume from it; start a new run from it with --model_name_or_path ${directory}`,
    );
  }
  const weights = (await readAll(file(CHECKPOINT_FILES.weights))).map(widened);
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

/**
 * The weights of the checkpoint in `directory`, as fp32, after checking them against its manifest, whether
 * or not the checkpoint can be resumed from (a model-only one too): what loading the best checkpoint at the
 * end of a run needs.
 *
 * @throws CheckpointError when the manifest is missing, does not list the weights, or they do not match it.
 */
export async function readCheckpointWeights(directory: string): Promise<NamedArray[]> {
  const manifest = await manifestOf(directory);
  const path = join(directory, CHECKPOINT_FILES.weights);
  const expected = manifest.files?.[CHECKPOINT_FILES.weights];
  if (expected === undefined) {
    throw new CheckpointError(
      `${join(directory, CHECKPOINT_FILES.manifest)}: does not list ${CHECKPOINT_FILES.weights}, so the weights cannot be checked`,
    );
  }
  await verifyFile(path, expected);
  return (await readAll(path)).map(widened);
}

/** A snapshot weight in the stored dtype (fp32 values rounded to bf16 / fp16, as the backend holds them). */
function storedAs(weight: NamedArray, dtype: CheckpointWriteOptions['weightsDtype']): NamedArray {
  if (dtype === undefined || dtype === 'float32' || weight.dtype !== 'float32') return weight;
  const values = weight.data as Float32Array;
  return {
    ...weight,
    dtype,
    data: dtype === 'bfloat16' ? float32ToBfloat16(values) : float32ToFloat16(values),
  };
}

/** A stored weight as fp32 (bf16 and fp16 widen exactly), what every backend restores from. */
function widened(weight: NamedArray): NamedArray {
  if (weight.dtype !== 'bfloat16' && weight.dtype !== 'float16') return weight;
  const bits = weight.data as Uint16Array;
  return {
    ...weight,
    dtype: 'float32',
    data: weight.dtype === 'bfloat16' ? bfloat16ToFloat32(bits) : float16ToFloat32(bits),
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
