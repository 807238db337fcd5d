import type { Checkpoint } from '@badam/core';
import { TRAINING_DEFAULTS, UsageError } from '@badam/core';
import type { RunFlagName } from './run-flags.js';
import { flagName, type RunnerDialect, type RunOptions } from './run-options.js';

/** Settings that give a run its meaning, by flag name as the runner spells it. */
export type RunSettings = Readonly<Record<string, string | number | boolean | undefined>>;

/** The key under which a run's method is kept (runners pick it with different flags). */
const METHOD_KEY = 'method';

/**
 * What a checkpoint records of the run that wrote it: the method, the shared settings that change what
 * training does, the resolved number of steps (`max_steps`, from `--num_train_epochs` too), and the runner's
 * own (model, data, sequence length...).
 */
export function runSettingsOf(
  options: RunOptions,
  dialect: RunnerDialect,
  maxSteps: number,
  runner: RunSettings = {},
): Record<string, string | number | boolean> {
  const adamw = TRAINING_DEFAULTS.adamw;
  // The shared flags whose change makes a resumed run another run (logging, saving and backends may change).
  const meaningful: Partial<Record<RunFlagName, string | number | boolean | undefined>> = {
    switch_block_every: options.switchBlockEvery,
    switch_mode: options.switchMode,
    start_block: options.startBlock,
    update_ratio: options.updateRatio,
    mask_mode: options.maskMode,
    per_device_train_batch_size: options.batchSize,
    gradient_accumulation_steps: options.gradientAccumulationSteps,
    learning_rate: options.learningRate,
    lr_scheduler_type: options.lrSchedulerType,
    warmup_ratio: options.warmupRatio,
    warmup_steps: options.warmupSteps,
    weight_decay: options.weightDecay,
    max_grad_norm: options.maxGradNorm,
    seed: options.seed,
    // Recorded where they differ from their defaults, so that checkpoints written before they were flags resume.
    adam_beta1: options.adamBetas[0] !== adamw.betas[0] ? options.adamBetas[0] : undefined,
    adam_beta2: options.adamBetas[1] !== adamw.betas[1] ? options.adamBetas[1] : undefined,
    adam_epsilon: options.adamEpsilon !== adamw.epsilon ? options.adamEpsilon : undefined,
    data_seed: options.dataSeed,
  };
  const out: Record<string, string | number | boolean> = {
    [METHOD_KEY]: options.method,
    [flagName(dialect, 'max_steps')]: maxSteps,
  };
  for (const [flag, v] of Object.entries(meaningful) as Array<[RunFlagName, unknown]>) {
    if (v !== undefined) out[flagName(dialect, flag)] = v as string | number | boolean;
  }
  for (const [flag, v] of Object.entries(runner)) if (v !== undefined) out[flag] = v;
  return out;
}

/**
 * Refuses a resume that would not continue the checkpoint's run: `--max_steps` before the checkpoint's step
 * (always), and any meaningful setting that differs from the checkpoint's, named with both values (unless
 * `--force_resume`, which says what it overrides). Checkpoints written before settings were recorded are
 * only checked for the step. A checkpoint at the run's last step (a run stopped after it, before its final
 * save) resumes to finish the run: nothing is trained, the model is written from it.
 */
export function checkResume(
  checkpoint: Checkpoint,
  settings: RunSettings,
  maxSteps: number,
  options: RunOptions,
  dialect: RunnerDialect,
  io: { warn(message: string): void },
): void {
  const step = checkpoint.trainerState.globalStep;
  const maxStepsFlag = flagName(dialect, 'max_steps');
  if (maxSteps < step) {
    throw new UsageError(
      `--${maxStepsFlag} ${maxSteps} is already passed: ${checkpoint.path} is at step ${step}; give a larger --${maxStepsFlag} (or --${flagName(dialect, 'num_train_epochs')}) to train on from it`,
    );
  }
  const saved = checkpoint.trainerState.callbacks?.run_settings as RunSettings | undefined;
  if (saved === undefined || typeof saved !== 'object') return;
  // `<flag>_sha256`: the contents of what a flag names (the dataset), not a flag of its own.
  const content = (key: string) => /^(.+)_sha256$/.exec(key)?.[1];
  const describe = (flag: string, v: unknown) =>
    flag === METHOD_KEY
      ? dialect.describeMethods([v as never])
      : content(flag) !== undefined
        ? `SHA-256 ${v === undefined ? '(unset)' : String(v).slice(0, 12)}...`
        : `--${flag} ${v === undefined ? '(unset)' : String(v)}`;
  const name = (flag: string) =>
    flag === METHOD_KEY
      ? 'the method'
      : content(flag) !== undefined
        ? `the contents of --${content(flag)}`
        : `--${flag}`;
  const differences = [...new Set([...Object.keys(saved), ...Object.keys(settings)])]
    // A content hash a checkpoint does not have (written before hashes were kept) cannot differ.
    .filter((flag) => !(content(flag) !== undefined && saved[flag] === undefined))
    .filter((flag) => JSON.stringify(saved[flag]) !== JSON.stringify(settings[flag]))
    .map(
      (flag) =>
        `${name(flag)}: ${describe(flag, saved[flag])} in the checkpoint, ${describe(flag, settings[flag])} now`,
    );
  if (differences.length === 0) {
    if (maxSteps === step)
      io.warn(
        `${dialect.name}: ${checkpoint.path} is the last step (${step}) of its run, which stopped before writing its model: finishing the run from it, without training`,
      );
    return;
  }
  if (options.forceResume) {
    io.warn(
      `${dialect.name}: --force_resume: continuing ${checkpoint.path} with other settings (${differences.join('; ')})`,
    );
    return;
  }
  throw new UsageError(
    `${checkpoint.path} was written by a run with other settings, so resuming would not continue it: ${differences.join('; ')}. Resume with the checkpoint's settings, or pass --force_resume to continue with these`,
  );
}
