/**
 * The checkpoint format, the same on every backend: what a checkpoint directory is called, which files it
 * holds, what its manifest says, and how checkpoints form timelines. Plain data and names only (no file
 * system): `@badam/callbacks`' `SafetensorsCheckpointStore` is the one reader and writer, and everything
 * else that meets a checkpoint (the output directory's cleanup, a resume check) asks this module. The
 * optimizer tensors' names inside a checkpoint are in `optimizer-tensors.ts` beside it.
 *
 * A checkpoint is a directory `checkpoint-<step>/` in the output directory (Hugging Face's layout) holding
 * {@link CHECKPOINT_FILES}, any files the run adds (config.json, tokenizer files: the folder loads as a
 * model) and `checkpoint.json`, the manifest: every file's size and SHA-256, the checkpoint's identity and
 * the one saved before it on its timeline.
 */

/** The files of one checkpoint directory. */
export const CHECKPOINT_FILES = {
  /** The model's weights, PyTorch's names (`format: pt`). */
  weights: 'model.safetensors',
  /** The active block's optimizer tensors (`<param>.exp_avg`, ...: see `OPTIMIZER_STATE_KEYS`). */
  optimizerTensors: 'optimizer.safetensors',
  /** The optimizer's plain-data state (BAdam's block order, position, step, RNG). */
  optimizerState: 'optimizer_state.json',
  /** The trainer's own state (data position, counters, callbacks' state), what resume reads. */
  trainerState: 'badam_trainer_state.json',
  /** The same run in Hugging Face's schema, for the tools that read checkpoints (not read back). */
  hfTrainerState: 'trainer_state.json',
  /** The manifest: {@link CheckpointManifest}. */
  manifest: 'checkpoint.json',
} as const;

/** Where checkpoints before `badam_trainer_state.json` kept the trainer's own state; still read. */
export const LEGACY_TRAINER_STATE_FILE = 'trainer_state.json';

/** A checkpoint directory's name; the step is the first group. */
export const CHECKPOINT_DIR = /^checkpoint-(\d+)$/;

/**
 * What an interrupted save of a checkpoint leaves behind: the checkpoint being written
 * ({@link checkpointTempDirName}) or one being replaced ({@link replacedCheckpointDirName}). Never read; the
 * next run removes them.
 */
export const UNFINISHED_CHECKPOINT = /^(?:\.checkpoint-\d+\.[0-9a-f]+\.tmp|checkpoint-\d+\.old-[0-9a-f]+)$/;

/** The directory name of the checkpoint of optimizer step `step`: `checkpoint-<step>`. */
export function checkpointDirName(step: number): string {
  return `checkpoint-${step}`;
}

/** The step of a checkpoint directory's name, or undefined for any other name. */
export function checkpointStepOf(name: string): number | undefined {
  const match = CHECKPOINT_DIR.exec(name);
  return match === null ? undefined : Number(match[1]);
}

/** Where a checkpoint is written before it is renamed into place (`tag`: random hex, unique per save). */
export function checkpointTempDirName(step: number, tag: string): string {
  return `.${checkpointDirName(step)}.${tag}.tmp`;
}

/** Where a checkpoint of the same step waits while a new one replaces it (`tag`: random hex). */
export function replacedCheckpointDirName(step: number, tag: string): string {
  return `${checkpointDirName(step)}.old-${tag}`;
}

/** A file's size and SHA-256 (hex) as the manifest records them. */
export interface CheckpointFileDigest {
  readonly bytes: number;
  readonly sha256: string;
}

/**
 * `checkpoint.json`. Checkpoints from before timelines have no `id`, `parent` or `savedAt` (their id is
 * their directory's name).
 */
export interface CheckpointManifest {
  readonly version: 1;
  readonly step: number;
  /** This checkpoint's identity. */
  readonly id?: string;
  /** The checkpoint saved before it on its timeline (or the one the run resumed from); null: the first. */
  readonly parent?: string | null;
  /** When it was saved (ms since the epoch): "newest" means the last saved, not the highest step. */
  readonly savedAt?: number;
  /**
   * Saved with the model only (Hugging Face's `save_only_model`): weights and trainer state, no optimizer
   * files, so a run cannot resume from it. Absent on a full checkpoint.
   */
  readonly modelOnly?: boolean;
  /** Every file of the directory but the manifest itself. */
  readonly files: Readonly<Record<string, CheckpointFileDigest>>;
}

/** A manifest with its fields in the order they are written. */
export function checkpointManifest(fields: {
  step: number;
  id: string;
  parent: string | null;
  savedAt: number;
  modelOnly?: boolean;
  files: Readonly<Record<string, CheckpointFileDigest>>;
}): CheckpointManifest {
  const { step, id, parent, savedAt, modelOnly, files } = fields;
  return { version: 1, step, id, parent, savedAt, ...(modelOnly === true ? { modelOnly } : {}), files };
}

/** How every JSON file of a checkpoint is written: two-space indent and a final newline. */
export function checkpointJson(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

/** The file holding the trainer's state in a checkpoint with this manifest (older ones: the legacy name). */
export function trainerStateFileOf(manifest: Pick<CheckpointManifest, 'files'>): string {
  const listed = manifest.files ?? {};
  return listed[CHECKPOINT_FILES.trainerState] === undefined &&
    listed[LEGACY_TRAINER_STATE_FILE] !== undefined
    ? LEGACY_TRAINER_STATE_FILE
    : CHECKPOINT_FILES.trainerState;
}

/**
 * The files a checkpoint must hold: weights, optimizer tensors and state, trainer state; a model-only
 * checkpoint ({@link CheckpointManifest.modelOnly}) has no optimizer files to need.
 */
export function requiredCheckpointFiles(manifest: Pick<CheckpointManifest, 'files' | 'modelOnly'>): string[] {
  return manifest.modelOnly === true
    ? [CHECKPOINT_FILES.weights, trainerStateFileOf(manifest)]
    : [
        CHECKPOINT_FILES.weights,
        CHECKPOINT_FILES.optimizerTensors,
        CHECKPOINT_FILES.optimizerState,
        trainerStateFileOf(manifest),
      ];
}

/**
 * The files the manifest does not list: a required one, or any file `present` in the directory (but the
 * manifest and hidden files). A manifest edited to drop a file would otherwise hide that file's corruption,
 * since only listed files are hashed. Empty when the manifest covers the checkpoint.
 */
export function unlistedCheckpointFiles(
  manifest: Pick<CheckpointManifest, 'files' | 'modelOnly'>,
  present: readonly string[],
): string[] {
  const listed = manifest.files ?? {};
  const required = requiredCheckpointFiles(manifest);
  return [
    ...required.filter((name) => listed[name] === undefined),
    ...present.filter(
      (name) =>
        name !== CHECKPOINT_FILES.manifest &&
        !name.startsWith('.') &&
        listed[name] === undefined &&
        !required.includes(name),
    ),
  ];
}

/** A checkpoint as its manifest places it on a timeline. */
export interface ListedCheckpoint {
  /** Where it is (a directory path for the safetensors store). */
  readonly dir: string;
  readonly step: number;
  readonly id: string;
  readonly parent: string | null;
  readonly savedAt: number;
}

/**
 * Where a checkpoint stands by its manifest; undefined when the manifest has no step (it cannot be placed).
 * `name` is its directory's name, the id of a checkpoint from before timelines.
 */
export function listedCheckpoint(dir: string, name: string, manifest: unknown): ListedCheckpoint | undefined {
  const m = manifest as Partial<CheckpointManifest> | null;
  if (typeof m !== 'object' || m === null || !Number.isSafeInteger(m.step)) return undefined;
  return { dir, step: m.step!, id: m.id ?? name, parent: m.parent ?? null, savedAt: m.savedAt ?? 0 };
}

/** Checkpoints newest first: the last saved first (a later step is not a newer checkpoint), then by step. */
export function newestFirst(listed: readonly ListedCheckpoint[]): ListedCheckpoint[] {
  return [...listed].sort((a, b) => b.savedAt - a.savedAt || b.step - a.step);
}

/**
 * The timeline that ends at `head`: `head`, the checkpoint saved before it, and so on back to the first
 * (or to one no longer there). Empty when `head` is null or not listed.
 */
export function checkpointTimeline(
  listed: readonly ListedCheckpoint[],
  head: string | null,
): ListedCheckpoint[] {
  const byId = new Map(listed.map((l) => [l.id, l]));
  const timeline: ListedCheckpoint[] = [];
  for (let at = head; at !== null && byId.has(at) && timeline.length < listed.length; ) {
    const entry = byId.get(at)!;
    timeline.push(entry);
    at = entry.parent;
  }
  return timeline;
}
