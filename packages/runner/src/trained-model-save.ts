import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { flagName, type RunnerDialect } from './run-options.js';

/** The trained model could not be written where the run was to write it; the message says where it is. */
export class ModelNotSavedError extends Error {
  override readonly name = 'ModelNotSavedError';
}

/** Options of {@link saveTrainedModel}. */
export interface SaveTrainedModelOptions {
  readonly outputDir: string;
  /** Writes the model's files (weights, config, tokenizer) into a directory. */
  readonly write: (directory: string) => Promise<void>;
  readonly dialect: Pick<RunnerDialect, 'name' | 'rename'>;
  readonly io: { warn(message: string): void };
  /** The run's last checkpoint, if any (a resume from it finishes the run). */
  readonly lastCheckpoint?: string | undefined;
  /** Where the model goes when the output directory cannot take it. Default `$BADAM_RESCUE_DIR`, else one in the system's temporary directory. */
  readonly rescueDir?: string;
  /** How long to keep trying when neither can take it (seconds). Default `$BADAM_SAVE_RETRY_SECONDS`, else 600. */
  readonly retrySeconds?: number;
  /** Seconds between tries. Default 15. */
  readonly retryIntervalSeconds?: number;
}

/**
 * Writes a trained model into the run's output directory without losing it when that fails (a full disk,
 * a directory removed or made read-only during the run): the weights are still in memory, so the model is
 * written to a rescue directory instead (another disk, as a rule), and if that fails too, both are tried
 * again every 15 seconds for a while (10 minutes) (free space, and the model is saved). A model saved elsewhere, or not
 * at all, is a {@link ModelNotSavedError} whose message says where the model is and how to put it in place,
 * or, failing all, how to finish the run from its last checkpoint.
 */
export async function saveTrainedModel(options: SaveTrainedModelOptions): Promise<void> {
  const { outputDir, write, dialect, io } = options;
  let first: unknown;
  try {
    await write(outputDir);
    return;
  } catch (error) {
    if (typeof (error as NodeJS.ErrnoException)?.code !== 'string') throw error; // not a write failure
    first = error;
  }
  const rescue = resolve(
    options.rescueDir ??
      process.env.BADAM_RESCUE_DIR ??
      join(tmpdir(), `badam-rescue-${basename(resolve(outputDir))}-${process.pid}`),
  );
  const why = (first as Error).message;
  io.warn(
    `${dialect.name}: the trained model could not be written to ${outputDir} (${why}); it is still in memory: writing it to ${rescue} instead`,
  );
  const saved = (where: string) =>
    new ModelNotSavedError(
      `the trained model could not be written to ${outputDir} (${why}), so it was written to ${where} instead: once ${outputDir} has room, move it there (mv ${where}/* ${outputDir}/), or use it where it is (--model_name_or_path ${where})`,
    );
  const tryRescue = async (): Promise<unknown> => {
    try {
      await mkdir(rescue, { recursive: true });
      await write(rescue);
      return undefined;
    } catch (error) {
      return error;
    }
  };
  let last = await tryRescue();
  if (last === undefined) throw saved(rescue);
  const seconds = options.retrySeconds ?? Number(process.env.BADAM_SAVE_RETRY_SECONDS ?? 600);
  const interval = options.retryIntervalSeconds ?? 15;
  if (seconds > 0)
    io.warn(
      `${dialect.name}: ${rescue} cannot take it either (${(last as Error).message}): free space on either disk; trying both again every ${interval} s for ${Math.ceil(seconds / 60)} min (the model is lost if this process is stopped)`,
    );
  for (const end = Date.now() + seconds * 1000; Date.now() < end; ) {
    await new Promise((done) => setTimeout(done, Math.min(interval * 1000, end - Date.now())));
    try {
      await write(outputDir);
      io.warn(`${dialect.name}: the trained model is written to ${outputDir} after all`);
      return;
    } catch {
      last = await tryRescue();
      if (last === undefined) throw saved(rescue);
    }
  }
  const resume = flagName(dialect, 'resume_from_checkpoint');
  throw new ModelNotSavedError(
    `the trained model could not be written to ${outputDir} (${why}) nor to ${rescue} (${(last as Error).message}) and is lost. ${
      options.lastCheckpoint !== undefined
        ? `Its last checkpoint ${options.lastCheckpoint} is kept: free space, then run the same command with --${resume} ${options.lastCheckpoint} to write the model from it`
        : `No checkpoint was saved (--${flagName(dialect, 'save_steps')} keeps some): free space and run again`
    }`,
  );
}
