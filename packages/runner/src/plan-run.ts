import {
  type LogFn,
  type ModelPartition,
  type NamedParameterInfo,
  planTraining,
  type TrainingPlan,
  type TrainingSettings,
} from '@badam/core';
import { flagName, type RunnerDialect, type RunOptions } from './run-options.js';

/** Core's training settings from a runner's options (`--max_grad_norm 0` is core's "no clipping" too). */
export function trainingSettingsOf(options: RunOptions): TrainingSettings {
  return {
    method: options.method,
    learningRate: options.learningRate,
    weightDecay: options.weightDecay,
    betas: options.adamBetas,
    epsilon: options.adamEpsilon,
    seed: options.seed,
    gradientAccumulationSteps: options.gradientAccumulationSteps,
    clipGradNorm: options.maxGradNorm,
    ...(options.switchBlockEvery !== undefined ? { switchBlockEvery: options.switchBlockEvery } : {}),
    switchMode: options.switchMode,
    ...(options.startBlock !== undefined ? { startBlock: options.startBlock } : {}),
    updateRatio: options.updateRatio,
    maskMode: options.maskMode,
    verbose: options.badamVerbose,
    batchSize: options.batchSize,
  };
}

/** What {@link planRun} needs beside the options. */
export interface RunPlanInput {
  readonly options: RunOptions;
  readonly dialect: Pick<RunnerDialect, 'rename'>;
  /** The model's parameters now (LoRA adapters included for `lora`). */
  readonly parameters: readonly NamedParameterInfo[];
  readonly partition: ModelPartition;
  /** Training examples, for BAdam's suggested K. */
  readonly trainExamples: number;
  /** K when the command line gives none: a number, or `'suggest'` for core's suggestion. */
  readonly defaultSwitchBlockEvery: number | 'suggest';
  /** Where the plan's and the optimizer's messages go. */
  readonly logFn: LogFn;
}

/**
 * Core's plan of a run from the runner's options: the method's optimizer, the partition it produces, and
 * BAdam's K (the message that reports a suggested K names the flag as the runner spells it).
 */
export function planRun(input: RunPlanInput): TrainingPlan {
  return planTraining({
    settings: trainingSettingsOf(input.options),
    parameters: input.parameters,
    partition: input.partition,
    trainExamples: input.trainExamples,
    defaultSwitchBlockEvery: input.defaultSwitchBlockEvery,
    switchBlockEveryName: `--${flagName(input.dialect, 'switch_block_every')}`,
    logFn: input.logFn,
  });
}
