import { CheckpointError } from '@badam/callbacks';
import { BadamOptionError, BadamPartitionError, BadamStateError, UsageError } from '@badam/core';
import { FileWriteError } from '@badam/safetensors';
import { releaseRunOutputDirs } from './run-output-dir.js';
import { ModelNotSavedError } from './trained-model-save.js';
import { TrainingDivergedError } from './training-diverged-error.js';

/**
 * The exit code for an error that ended a run: 2 for a command line that cannot run as given (a bad flag
 * or value), 1 for everything else (a file that cannot be read, a checkpoint that does not fit, training
 * that diverged, a bug).
 */
export function exitCodeOf(error: unknown): number {
  return error instanceof UsageError || error instanceof BadamOptionError ? 2 : 1;
}

/** True for the errors whose message says all a user needs: no stack trace, even with BADAM_DEBUG. */
function isExplained(error: unknown): boolean {
  return (
    error instanceof UsageError ||
    error instanceof BadamOptionError ||
    error instanceof BadamPartitionError ||
    error instanceof BadamStateError ||
    error instanceof CheckpointError ||
    error instanceof TrainingDivergedError ||
    error instanceof ModelNotSavedError ||
    error instanceof FileWriteError
  );
}

/**
 * Runs a runner's command and turns what happens into an exit code: the command's own, 130 after Ctrl-C
 * (the interrupt callback sets it once the checkpoint is saved), or {@link exitCodeOf} an error, whose
 * message is printed as `<name>: error: ...` with a pointer to `--help` for usage errors. The stack trace
 * of an unexpected error is printed only with `BADAM_DEBUG` set.
 *
 * @example
 * ```ts
 * process.exitCode = await runCli('badam-llama', io, async () => { await train(argv); return 0; });
 * ```
 */
export async function runCli(
  name: string,
  io: { warn(message: string): void },
  command: () => Promise<number>,
): Promise<number> {
  try {
    const code = await command();
    return process.exitCode === 130 ? 130 : code;
  } catch (error) {
    io.warn(`${name}: error: ${(error as Error).message}`);
    if (error instanceof UsageError) io.warn(`Run ${name} --help for the flags.`);
    if (!isExplained(error) && process.env.BADAM_DEBUG) io.warn((error as Error).stack ?? '');
    return exitCodeOf(error);
  } finally {
    releaseRunOutputDirs(); // the command's runs are over: their output directories are free again
  }
}
