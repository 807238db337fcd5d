import type { DataSource } from '@badam/core';
import { evaluateTask, type TfjsTrainingTask } from './tfjs-training-task.js';

/** Loss and metrics of a model on a held-out set, weighted as the Trainer's evaluation weights them. */
export interface HeldOutEvaluation {
  readonly loss: number;
  readonly metrics: Readonly<Record<string, number>>;
}

/**
 * Evaluates a tfjs task on every batch of `data` (epoch 0) outside any training run: the mean loss and
 * metrics, each batch weighted by its `weight` (tokens, examples), exactly as the Trainer's `eval_loss`
 * is computed. `compare` uses it to score a model on a split the training run did not evaluate on.
 *
 * @example
 * ```ts
 * const { loss, metrics } = await evaluateHeldOut(causalLmTask(model), testData);
 * ```
 */
export async function evaluateHeldOut<TBatch>(
  task: TfjsTrainingTask<TBatch>,
  data: DataSource<TBatch>,
): Promise<HeldOutEvaluation> {
  let weightSum = 0;
  let lossSum = 0;
  const metricSums = new Map<string, number>();
  for await (const batch of data.batches(0)) {
    const { loss, weight, metrics = {} } = evaluateTask(task, batch);
    weightSum += weight;
    lossSum += loss * weight;
    for (const [k, v] of Object.entries(metrics)) metricSums.set(k, (metricSums.get(k) ?? 0) + v * weight);
  }
  if (weightSum === 0)
    throw new Error('evaluateHeldOut: the held-out data has no weight (no batches or no tokens)');
  return {
    loss: lossSum / weightSum,
    metrics: Object.fromEntries([...metricSums].map(([k, v]) => [k, v / weightSum])),
  };
}
