import type { EvaluationResult } from '@badam/core';
import * as tf from '@tensorflow/tfjs-core';
import type { ParameterVariable } from '../optimizer-state.js';

/** The model side of training on tfjs: the loss of a micro-batch, its size, and optionally evaluation. */
export interface TfjsTrainingTask<TBatch> {
  /** Mean loss of the micro-batch, as a scalar (built from the model's variables so gradients flow). */
  loss(batch: TBatch): tf.Scalar;
  /** Tokens (or examples) in the micro-batch. */
  tokens(batch: TBatch): number;
  /** Loss and metrics for evaluation. Default: `loss(batch)` weighted by `tokens(batch)`. */
  evaluate?(batch: TBatch): EvaluationResult;
}

/**
 * Forward and backward on a micro-batch for `parameters` only: the loss as a number and the gradients by
 * parameter name (the caller owns them).
 */
export function lossAndGradients<TBatch>(
  task: TfjsTrainingTask<TBatch>,
  batch: TBatch,
  parameters: readonly ParameterVariable[],
): { loss: number; tokens: number; gradients: Map<string, tf.Tensor> } {
  const { value, grads } = tf.variableGrads(
    () => task.loss(batch),
    parameters.map((p) => p.variable),
  );
  const gradients = new Map(parameters.map((p) => [p.name, grads[p.variable.name]!]));
  const loss = value.dataSync()[0]!;
  value.dispose();
  return { loss, tokens: task.tokens(batch), gradients };
}

/** The task's evaluation, or its loss weighted by its tokens. */
export function evaluateTask<TBatch>(task: TfjsTrainingTask<TBatch>, batch: TBatch): EvaluationResult {
  if (task.evaluate !== undefined) return task.evaluate(batch);
  const loss = tf.tidy(() => task.loss(batch).dataSync()[0]!);
  return { loss, weight: task.tokens(batch) };
}
