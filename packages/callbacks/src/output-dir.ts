import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { CHECKPOINT_DIR, UNFINISHED_CHECKPOINT, UsageError } from '@badam/core';
import { writeFileAtomic } from '@badam/safetensors';
import { checkOutputDirFree, isOutputDirLocked, LOCK_FILE, OutputDirLock } from './output-dir-lock.js';

/** A file being written atomically (`.<name>.<pid>.<id>.tmp`, @badam/safetensors' `writeFileAtomic`). */
const UNFINISHED_FILE = /^\..+\.\d+\.[0-9a-f]{8}\.tmp$/;

/**
 * What an interrupted save leaves behind in an output directory: a checkpoint being written
 * (`.checkpoint-N.<id>.tmp/`), a checkpoint being replaced (`checkpoint-N.old-<id>/`), both named by core's
 * checkpoint format, or a file being written atomically (`.<name>.<pid>.<id>.tmp`). None of them is ever
 * read; the next run removes them.
 */
export const UNFINISHED_SAVE = new RegExp(`${UNFINISHED_CHECKPOINT.source}|${UNFINISHED_FILE.source}`);

/**
 * What a run writes in its output directory (the model, adapters, tokenizer and config files, results,
 * predictions, logs, plots, checkpoints, the embedded default's and `compare`'s own files):
 * `--overwrite_output_dir` removes these, so that nothing of the earlier run is left beside the new one,
 * and nothing else.
 */
export const RUN_OUTPUTS: readonly RegExp[] = [
  CHECKPOINT_DIR,
  /^model(-\d+-of-\d+)?\.safetensors$/,
  /^model\.safetensors\.index\.json$/,
  /^adapter_(model\.safetensors|config\.json)$/,
  /^(config|generation_config|tokenizer|tokenizer_config|special_tokens_map|vocab)\.json$/,
  /^merges\.txt$/,
  /^(all|train|eval|predict|embedded|compare)_results\.json$/,
  /^(generated|val)_predictions\.jsonl$/,
  /^trainer_(log\.jsonl|state\.json)$/,
  /^training_[a-z_]*\.png$/,
  /^compare_(loss\.png|table\.md)$/,
  /^(badam_llama|pretraining)\.json$/,
  /^pretrain$/,
  /^(block|full|lora|sparse)$/,
];

/** How {@link prepareOutputDir} treats a directory that holds earlier work. */
export interface PrepareOutputDirOptions {
  /**
   * Reuse a non-empty directory (`--overwrite_output_dir`): what an earlier run wrote there
   * ({@link RUN_OUTPUTS}) is removed.
   */
  readonly overwrite: boolean;
  /** The run resumes from a checkpoint in it (`--resume_from_checkpoint`): the directory is kept as it is. */
  readonly resuming: boolean;
  /**
   * The run resumes from this checkpoint of another directory: this one must hold no earlier work (it would
   * be mixed with the resumed run), unless `overwrite`.
   */
  readonly resumingFrom?: string;
}

/** What {@link prepareOutputDir} did. */
export interface PreparedOutputDir {
  /** Names of what interrupted saves left behind ({@link UNFINISHED_SAVE}), removed. */
  readonly unfinished: string[];
  /** Names of the earlier run's outputs removed by `overwrite`. */
  readonly replaced: string[];
  /** This process's hold on the directory's lock: {@link OutputDirLock.release} when the run is over. */
  readonly lock: OutputDirLock;
}

/** An entry that is neither an unfinished save nor a run's lock file. */
function isWork(entry: string): boolean {
  return !UNFINISHED_SAVE.test(entry) && !LOCK_FILE.test(entry);
}

/**
 * True when `directory` holds earlier work: it exists and has an entry other than an unfinished save or a
 * lock file, or another live run holds it.
 */
export async function holdsEarlierWork(directory: string): Promise<boolean> {
  try {
    return (await readdir(directory)).some(isWork) || (await isOutputDirLocked(directory));
  } catch {
    return false;
  }
}

/**
 * Makes `directory` ready for a run as Hugging Face's Trainer does, before any work, and takes its lock
 * (one run per directory, see {@link OutputDirLock}): a directory another live run holds is refused naming
 * it; one holding earlier work is refused unless the run overwrites it (what an earlier run wrote,
 * {@link RUN_OUTPUTS}, is removed then) or resumes from it; an empty path, a path that is a file, or a
 * directory that cannot be written, is refused naming the problem. What interrupted saves left behind
 * ({@link UNFINISHED_SAVE}) is removed.
 */
export async function prepareOutputDir(
  directory: string,
  options: PrepareOutputDirOptions,
): Promise<PreparedOutputDir> {
  if (directory.trim() === '') {
    throw new UsageError(
      '--output_dir is empty (an unset shell variable?): it would mean the current directory; name the directory to write to',
    );
  }
  const info = await stat(directory).catch(() => undefined);
  if (info !== undefined && !info.isDirectory()) {
    throw new UsageError(`--output_dir ${directory} is a file, not a directory: choose another --output_dir`);
  }
  if (info !== undefined) await checkOutputDirFree(directory);
  const entries = info === undefined ? [] : await readdir(directory).catch(() => [] as string[]);
  const unfinished = entries.filter((entry) => UNFINISHED_SAVE.test(entry));
  const earlier = entries.filter(isWork);
  if (earlier.length > 0 && options.resumingFrom !== undefined && !options.overwrite) {
    throw new UsageError(
      `--resume_from_checkpoint ${options.resumingFrom} continues a run of another directory, but output directory ${directory} holds earlier work (${describeEntries(earlier)}), which the resumed run would delete or mix with its own: pass --overwrite_output_dir to replace it, or choose an empty --output_dir`,
    );
  }
  if (earlier.length > 0 && !options.overwrite && !options.resuming && options.resumingFrom === undefined) {
    throw new UsageError(
      `output directory ${directory} holds earlier work (${describeEntries(earlier)}): pass --overwrite_output_dir to replace it, --resume_from_checkpoint to continue its run, or another --output_dir`,
    );
  }
  try {
    await makeDirectory(directory);
    // A probe: permissions, a read-only file system or a full disk show here, not in the first checkpoint.
    const probe = join(directory, `.badam-write-test.${randomBytes(4).toString('hex')}`);
    await writeFile(probe, '');
    await unlink(probe);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    const why =
      code === 'ENOTDIR'
        ? 'a part of the path is a file'
        : code === 'EACCES' || code === 'EPERM'
          ? 'permission denied'
          : code === 'EROFS'
            ? 'the file system is read-only'
            : code === 'ENOSPC'
              ? 'the disk is full'
              : code === 'ENOENT'
                ? 'the file system cannot make a directory there'
                : code;
    throw new UsageError(
      `cannot write to output directory ${directory} (${why}): choose another --output_dir`,
    );
  }
  const lock = await OutputDirLock.acquire(directory);
  for (const entry of unfinished) await rm(join(directory, entry), { recursive: true, force: true });
  const replaced = options.overwrite ? earlier.filter((entry) => RUN_OUTPUTS.some((p) => p.test(entry))) : [];
  for (const entry of replaced) await rm(join(directory, entry), { recursive: true, force: true });
  return { unfinished, replaced, lock };
}

/**
 * `mkdir -p`, one level at a time: Node's recursive mkdir never returns on some paths (under /proc it
 * loops on ENOENT), where this fails with the error of the level that cannot be made.
 */
async function makeDirectory(directory: string): Promise<void> {
  const missing: string[] = [];
  for (let path = resolve(directory); ; path = dirname(path)) {
    if ((await stat(path).catch(() => undefined)) !== undefined || dirname(path) === path) break;
    missing.push(path);
  }
  for (const path of missing.reverse()) {
    await mkdir(path).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'EEXIST') throw error;
    });
  }
}

function describeEntries(entries: readonly string[]): string {
  const checkpoints = entries.filter((e) => CHECKPOINT_DIR.test(e)).length;
  const shown = entries.filter((e) => !CHECKPOINT_DIR.test(e)).slice(0, 3);
  const parts = [
    ...(checkpoints > 0 ? [`${checkpoints} checkpoint${checkpoints === 1 ? '' : 's'}`] : []),
    ...shown,
  ];
  const rest = entries.length - checkpoints - shown.length;
  return `${parts.join(', ')}${rest > 0 ? ` and ${rest} more` : ''}`;
}

/** JSON as Hugging Face writes its results (`all_results.json`, ...): sorted keys, 4-space indent, atomically. */
export async function writeResultsJson(path: string, value: unknown): Promise<void> {
  const sorted =
    typeof value === 'object' && value !== null && !Array.isArray(value)
      ? Object.fromEntries(Object.entries(value).sort(([a], [b]) => a.localeCompare(b)))
      : value;
  await writeFileAtomic(path, [`${JSON.stringify(sorted, null, 4)}\n`]);
}
