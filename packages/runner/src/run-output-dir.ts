import { stat } from 'node:fs/promises';
import { holdsEarlierWork, prepareOutputDir, SafetensorsCheckpointStore } from '@badam/callbacks';
import { UsageError } from '@badam/core';
import { flagName, type RunnerDialect, type RunOptions } from './run-options.js';

/** The most numbered siblings tried for a default output directory that holds earlier work. */
const MAX_NUMBERED = 999;

/**
 * Gets a run's output directory ready before any work, and sets `options.outputDir` to it. A directory the
 * user named (`--output_dir`) that holds earlier work is refused unless `--overwrite_output_dir` or
 * `--resume_from_checkpoint`; a default one (the user named none) is never reused silently either: the run
 * takes the first free `<default>-2`, `<default>-3`, ... and says so. What interrupted saves left behind is
 * removed, with a line saying what. A `--resume_from_checkpoint` that names nothing to resume from is
 * refused here too, before any work.
 */
export async function prepareRunOutputDir(
  options: RunOptions,
  dialect: Pick<RunnerDialect, 'name' | 'rename'>,
  io: { log(message: string): void },
): Promise<string> {
  const resuming = options.resumeFromCheckpoint !== undefined;
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
  const removed = await prepareOutputDir(directory, { overwrite: options.overwriteOutputDir, resuming });
  if (removed.length > 0)
    io.log(
      `${dialect.name}: removed ${removed.length} unfinished save(s) an interrupted run left in ${directory}: ${removed.join(', ')}`,
    );
  options.outputDir = directory;
  return directory;
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
  const info = await stat(from).catch(() => undefined);
  if (info === undefined)
    throw new UsageError(
      `${flag} ${from}: no such directory; give a checkpoint-<step> directory of an earlier run, or true for the newest in --${flagName(dialect, 'output_dir')}`,
    );
  if (!info.isDirectory())
    throw new UsageError(`${flag} ${from} is a file: a checkpoint is a checkpoint-<step> directory`);
}
