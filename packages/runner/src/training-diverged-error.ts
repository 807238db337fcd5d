import { flagName, type RunnerDialect } from './run-options.js';

/**
 * Training diverged (the loss guard stopped it, or weights became NaN or infinite): nothing was saved from
 * the diverged weights. The message names the last good checkpoint and how to go on from it.
 */
export class TrainingDivergedError extends Error {
  override readonly name = 'TrainingDivergedError';
  /** The last checkpoint saved before the divergence (all saved checkpoints hold finite weights). */
  readonly lastGoodCheckpoint: string | undefined;

  constructor(details: {
    step: number;
    reason: string;
    lastGoodCheckpoint: string | undefined;
    dialect: Pick<RunnerDialect, 'rename'>;
  }) {
    const resume = flagName(details.dialect, 'resume_from_checkpoint');
    const lr = flagName(details.dialect, 'learning_rate');
    const save = flagName(details.dialect, 'save_steps');
    super(
      `training diverged at step ${details.step} (${details.reason}); no model was saved from the diverged weights. ${
        details.lastGoodCheckpoint !== undefined
          ? `The last good checkpoint is ${details.lastGoodCheckpoint}: continue from it with --${resume} ${details.lastGoodCheckpoint} --force_resume and a lower --${lr}`
          : `No checkpoint was saved before it (--${save} keeps some): start again with a lower --${lr}`
      }`,
    );
    this.lastGoodCheckpoint = details.lastGoodCheckpoint;
  }
}
