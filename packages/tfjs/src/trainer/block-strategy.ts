import { BlockTrainer } from '@badam/core';
import * as tf from '@tensorflow/tfjs-core';
import { type BaseOptimizer, baseOptimizerName } from '../base-optimizer.js';
import type { BlockOptimizer } from '../block-optimizer.js';
import { evaluateTask, lossAndGradients, type TfjsTrainingTask } from './tfjs-training-task.js';

/**
 * BAdam's strategy: core's {@link BlockTrainer} over the optimizer's engine and its TfjsBlockBackend, with
 * gradients computed for the active block's variables only. Accumulation, clipping, the schedule and the
 * checkpoint format are core's.
 */
export function blockStrategy<TBatch>(
  optimizer: BlockOptimizer,
  task: TfjsTrainingTask<TBatch>,
  description: string | undefined,
): BlockTrainer<TBatch, BaseOptimizer, tf.Tensor> {
  const { engine, backend } = optimizer;
  return new BlockTrainer(
    engine,
    {
      lossAndGradients: (batch, trainable) =>
        lossAndGradients(
          task,
          batch,
          trainable.map((name) => ({ name, variable: backend.variables.get(name)! })),
        ),
      evaluate: (batch) => evaluateTask(task, batch),
    },
    {
      description:
        description ??
        `BAdam on tfjs (${tf.getBackend()}): ${engine.summary}, base ${baseOptimizerName(engine.baseOptimizer)}`,
    },
  );
}
