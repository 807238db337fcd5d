import {
  type BackendModel,
  checkPlannedParameters,
  type PlannedTrainerBackend,
  type TrainingPlan,
} from '@badam/core';
import * as tf from '@tensorflow/tfjs-core';
import { BlockOptimizer } from './block-optimizer.js';
import { BlockOptimizerRatio } from './block-optimizer-ratio.js';
import { type NamedVariable, parameterInfoOf } from './named-variables.js';
import { nonFiniteTensors } from './non-finite.js';
import { trackPeakMemory } from './peak-memory.js';
import { TfjsTrainerBackend } from './tfjs-trainer-backend.js';
import type { TfjsTrainingTask } from './trainer/tfjs-training-task.js';

/** A model as @badam/tfjs trains it: its variables by Hugging Face name, and the loss of a micro-batch. */
export interface TfjsTrainingModel<TBatch> {
  /** The model's `[name, tf.Variable]` pairs in model order, LoRA adapters included once added. */
  namedParameters(): readonly NamedVariable[];
  /** The loss (and evaluation) of a micro-batch, built from those variables. */
  readonly task: TfjsTrainingTask<TBatch>;
}

/**
 * @badam/tfjs's trainer backend factory (core's `TrainerBackendFactory`): the plan's optimizer on the model's
 * variables — a {@link BlockOptimizer} (BAdam; full Adam and LoRA as one block that never switches) or a
 * {@link BlockOptimizerRatio} — driven by a {@link TfjsTrainerBackend}, with tfjs's peak memory tracked from
 * here until `dispose()` and a check for non-finite weights. The model's variables stay the model's.
 *
 * @example
 * ```ts
 * const plan = planTraining({ settings: { method: 'block', learningRate: 1e-3, switchBlockEvery: 50 }, parameters: parameterInfoOf(named) });
 * const backend = await createTfjsTrainerBackend(plan, { namedParameters: () => named, task });
 * try {
 *   await new Trainer({ backend: backend.trainer, trainData, maxSteps: 200 }).train();
 * } finally {
 *   backend.dispose();
 * }
 * ```
 */
export async function createTfjsTrainerBackend<TBatch>(
  plan: TrainingPlan,
  model: TfjsTrainingModel<TBatch>,
): Promise<PlannedTrainerBackend<TBatch>> {
  const namedParameters = model.namedParameters();
  checkPlannedParameters(plan, parameterInfoOf(namedParameters));
  const { task } = model;
  // tfjs's peak, tracked from the first pass until dispose(): the results' peak and the progress line's.
  let peak: ReturnType<typeof trackPeakMemory> | undefined;
  let peakBytes = 0;
  const runPeak = () => peak?.peakBytes() ?? peakBytes;
  let optimizer: BlockOptimizer | BlockOptimizerRatio;
  let trainer: TfjsTrainerBackend<TBatch>;
  if (plan.optimizer.kind === 'block') {
    const blocks = new BlockOptimizer({ ...plan.optimizer.options, namedParameters });
    optimizer = blocks;
    // BAdam describes its blocks itself; full Adam and LoRA are one block that never switches.
    const description =
      plan.method === 'block'
        ? undefined
        : `${plan.label} on tfjs (${tf.getBackend()}): AdamW over ${blocks.engine.trainableNames.length} trainable tensors`;
    trainer = new TfjsTrainerBackend({
      task,
      optimizer,
      peakBytes: runPeak,
      ...(description ? { description } : {}),
    });
  } else {
    const { betas, epsilon, learningRate } = plan.baseOptimizer;
    optimizer = new BlockOptimizerRatio({
      ...plan.optimizer.masks,
      namedParameters,
      learningRate,
      betas,
      epsilon,
      verbose: plan.optimizer.verbose,
      logFn: plan.logFn,
    });
    trainer = new TfjsTrainerBackend({
      task,
      optimizer,
      peakBytes: runPeak,
      namedParameters,
      gradientAccumulationSteps: plan.gradientAccumulationSteps,
      ...(plan.clipGradNorm !== undefined ? { clipGradNorm: plan.clipGradNorm } : {}),
    });
  }
  try {
    peak = trackPeakMemory();
  } catch (error) {
    optimizer.dispose();
    throw error;
  }
  return {
    trainer,
    peakMemoryBytes: runPeak,
    nonFiniteWeights: () => nonFiniteTensors(namedParameters),
    dispose() {
      if (peak === undefined) return;
      peakBytes = peak.peakBytes();
      peak.stop();
      peak = undefined;
      optimizer.dispose();
    },
  };
}

/**
 * A tfjs model bound to {@link createTfjsTrainerBackend}: core's `BackendModel`, what a runner plans and
 * trains without knowing the backend.
 *
 * @example
 * ```ts
 * const bound = tfjsBackendModel({ namedParameters: () => model.namedParameters, task });
 * const plan = planTraining({ settings, parameters: bound.parameters() });
 * const backend = await bound.createTrainerBackend(plan);
 * ```
 */
export function tfjsBackendModel<TBatch>(model: TfjsTrainingModel<TBatch>): BackendModel<TBatch> {
  return {
    parameters: () => parameterInfoOf(model.namedParameters()),
    createTrainerBackend: (plan) => createTfjsTrainerBackend(plan, model),
  };
}
