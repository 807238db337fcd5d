import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { UsageError } from '@badam/core';
import { writeFileAtomic } from '@badam/safetensors';

/**
 * What an interrupted save leaves behind in an output directory: a checkpoint being written
 * (`.checkpoint-N.<id>.tmp/`), a checkpoint being replaced (`checkpoint-N.old-<id>/`), or a file being
 * written atomically (`.<name>.<pid>.<id>.tmp`). None of them is ever read; the next run removes them.
 */
export const UNFINISHED_SAVE =
  /^(\.checkpoint-\d+\.[0-9a-f]+\.tmp|checkpoint-\d+\.old-[0-9a-f]+|\..+\.\d+\.[0-9a-f]{8}\.tmp)$/;

/** How {@link prepareOutputDir} treats a directory that holds earlier work. */
export interface PrepareOutputDirOptions {
  /** Reuse a non-empty directory (`--overwrite_output_dir`): its `checkpoint-N` folders are removed. */
  readonly overwrite: boolean;
  /** The run resumes from a checkpoint in it (`--resume_from_checkpoint`): the directory is kept as it is. */
  readonly resuming: boolean;
}

/** True when `directory` holds earlier work: it exists and has an entry other than an unfinished save. */
export async function holdsEarlierWork(directory: string): Promise<boolean> {
  try {
    return (await readdir(directory)).some((entry) => !UNFINISHED_SAVE.test(entry));
  } catch {
    return false;
  }
}

/**
 * Makes `directory` ready for a run as Hugging Face's Trainer does, before any work: a directory holding
 * earlier work is refused unless the run overwrites it (old `checkpoint-N` folders are removed then) or
 * resumes from it; a path that is a file, or a directory that cannot be written, is refused naming the
 * problem. What interrupted saves left behind ({@link UNFINISHED_SAVE}) is removed; their names are
 * returned so that the run can say so.
 */
export async function prepareOutputDir(
  directory: string,
  options: PrepareOutputDirOptions,
): Promise<string[]> {
  const info = await stat(directory).catch(() => undefined);
  if (info !== undefined && !info.isDirectory()) {
    throw new UsageError(`--output_dir ${directory} is a file, not a directory: choose another --output_dir`);
  }
  const entries = info === undefined ? [] : await readdir(directory).catch(() => [] as string[]);
  const unfinished = entries.filter((entry) => UNFINISHED_SAVE.test(entry));
  const earlier = entries.filter((entry) => !UNFINISHED_SAVE.test(entry));
  if (earlier.length > 0 && !options.overwrite && !options.resuming) {
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
  for (const entry of unfinished) await rm(join(directory, entry), { recursive: true, force: true });
  if (options.overwrite) {
    for (const entry of earlier)
      if (/^checkpoint-\d+$/.test(entry)) await rm(join(directory, entry), { recursive: true, force: true });
  }
  return unfinished;
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
  const checkpoints = entries.filter((e) => /^checkpoint-\d+$/.test(e)).length;
  const shown = entries.filter((e) => !/^checkpoint-\d+$/.test(e)).slice(0, 3);
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
