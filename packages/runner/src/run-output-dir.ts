import { realpath, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import {
  checkOutputDirFree,
  holdsEarlierWork,
  type OutputDirLock,
  prepareOutputDir,
  SafetensorsCheckpointStore,
} from '@badam/callbacks';
import { UsageError } from '@badam/core';
import { flagName, type RunnerDialect, type RunOptions } from './run-options.js';

/** The most numbered siblings tried for a default output directory that holds earlier work. */
const MAX_NUMBERED = 999;

/** The output-directory locks this process's runs took, released when their command ends. */
const heldLocks: OutputDirLock[] = [];

/**
 * Gets a run's output directory ready before any work, and sets `options.outputDir` to it. A directory the
 * user named (`--output_dir`) that holds earlier work is refused unless `--overwrite_output_dir` (which
 * removes what the earlier run wrote) or `--resume_from_checkpoint` with one of its checkpoints; a
 * checkpoint of another directory resumes only into an empty one (or with `--overwrite_output_dir`). A
 * default one (the user named none) is never reused silently either: the run takes the first free
 * `<default>-2`, `<default>-3`, ... and says so. What interrupted saves left behind is removed, with a line
 * saying what. A `--resume_from_checkpoint` that names nothing to resume from is refused here too.
 *
 * The run holds the directory's lock from here on (one run per directory: another process's run is refused,
 * naming this one) until {@link releaseRunOutputDirs} or the process ends.
 */
export async function prepareRunOutputDir(
  options: RunOptions,
  dialect: Pick<RunnerDialect, 'name' | 'rename'>,
  io: { log(message: string): void },
): Promise<string> {
  const resuming = options.resumeFromCheckpoint !== undefined;
  // A directory another run holds is refused first: what it holds now is that run's business.
  if (!options.outputDirIsDefault) await checkOutputDirFree(options.outputDir);
  await checkResumePoint(options, dialect);
  let directory = options.outputDir;
  if (options.outputDirIsDefault && !options.overwriteOutputDir && !resuming) {
    for (let n = 2; (await holdsEarlierWork(directory)) && n <= MAX_NUMBERED; n++)
      directory = `${options.outputDir}-${n}`;
    if (directory !== options.outputDir)
      io.log(
        `${dialect.name}: ${options.outputDir} holds an earlier run, which stays as it is; this run writes to ${directory} (--output_dir chooses, --overwrite_output_dir replaces)`,
      );
  }
  const elsewhere = await resumesFromElsewhere(options.resumeFromCheckpoint, directory);
  const prepared = await prepareOutputDir(directory, {
    overwrite: options.overwriteOutputDir,
    resuming: resuming && !elsewhere,
    ...(elsewhere ? { resumingFrom: options.resumeFromCheckpoint! } : {}),
  });
  heldLocks.push(prepared.lock);
  if (prepared.unfinished.length > 0)
    io.log(
      `${dialect.name}: removed ${prepared.unfinished.length} unfinished save(s) an interrupted run left in ${directory}: ${prepared.unfinished.join(', ')}`,
    );
  if (prepared.replaced.length > 0)
    io.log(
      `${dialect.name}: --${flagName(dialect, 'overwrite_output_dir')}: removed what an earlier run wrote in ${directory}: ${prepared.replaced.join(', ')}`,
    );
  options.outputDir = directory;
  return directory;
}

/** Lets go of the output-directory locks this process's runs took (a runner's command calls it when it ends). */
export function releaseRunOutputDirs(): void {
  for (const lock of heldLocks.splice(0)) lock.release();
}

/** True when `from` is a checkpoint path outside `directory` (resuming another directory's run). */
async function resumesFromElsewhere(from: string | undefined, directory: string): Promise<boolean> {
  if (from === undefined || from === 'true') return false;
  const real = async (path: string) => realpath(path).catch(() => resolve(path));
  return (await real(dirname(from))) !== (await real(directory));
}

/** The checkpoint `--resume_from_checkpoint` names exists (a path), or the output directory has one (`true`). */
async function checkResumePoint(options: RunOptions, dialect: Pick<RunnerDialect, 'rename'>): Promise<void> {
  const from = options.resumeFromCheckpoint;
  if (from === undefined) return;
  const flag = `--${flagName(dialect, 'resume_from_checkpoint')}`;
  if (from === 'true') {
    const found = await new SafetensorsCheckpointStore({ outputDir: options.outputDir }).list();
    if (found.length === 0)
      throw new UsageError(
        `${flag} true: ${options.outputDir} has no checkpoint-<step> directory to resume from (check --${flagName(dialect, 'output_dir')})`,
      );
    return;
  }
  const info = await stat(from).catch((error: NodeJS.ErrnoException) => error.code ?? 'ENOENT');
  if (info === 'ELOOP')
    throw new UsageError(
      `${flag} ${from} is a symbolic link that loops (ELOOP): point it at a checkpoint-<step> directory`,
    );
  if (typeof info === 'string')
    throw new UsageError(
      `${flag} ${from}: no such directory; give a checkpoint-<step> directory of an earlier run, or true for the newest in --${flagName(dialect, 'output_dir')}`,
    );
  if (!info.isDirectory())
    throw new UsageError(`${flag} ${from} is a file: a checkpoint is a checkpoint-<step> directory`);
}
