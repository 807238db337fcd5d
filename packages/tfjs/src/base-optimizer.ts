import { BadamOptionError } from '@badam/core';
import type * as tf from '@tensorflow/tfjs-core';
import { AdamW } from './adamw.js';

/** The base optimizers BlockOptimizer accepts: any tf.Optimizer built from its config (all of `tf.train.*`, and {@link AdamW}). */
export type BaseOptimizer = tf.Optimizer;

type OptimizerClass = tf.serialization.SerializableConstructor<tf.Optimizer> & {
  fromConfig(
    cls: tf.serialization.SerializableConstructor<tf.Optimizer>,
    config: tf.serialization.ConfigDict,
  ): tf.Optimizer;
};

/** Checks that `optimizer` is a tf.Optimizer that can be re-created from its config. */
export function validateBaseOptimizer(optimizer: unknown): BaseOptimizer {
  const candidate = optimizer as Partial<tf.Optimizer> | undefined;
  if (
    candidate == null ||
    typeof candidate.applyGradients !== 'function' ||
    typeof candidate.getConfig !== 'function' ||
    typeof (candidate.constructor as Partial<OptimizerClass> | undefined)?.fromConfig !== 'function'
  ) {
    throw new BadamOptionError(
      'baseOptimizer',
      optimizer,
      'a tf.Optimizer (tf.train.sgd, momentum, rmsprop, adagrad, adadelta, adam, adamax) or AdamW',
    );
  }
  return optimizer as BaseOptimizer;
}

/**
 * A new optimizer of the same class and hyperparameters as `template`, with empty state. BAdam starts
 * every block with one: `tf.train.adam` keeps its beta powers for the whole optimizer and its moments by
 * position in the gradient list, so reusing one instance across blocks would carry stale state over.
 * For AdamW, `excludeFromWeightDecay` is set from core's no-decay rule for the block's parameters.
 */
export function freshOptimizerLike(
  template: BaseOptimizer,
  noDecayVariables?: ReadonlySet<string>,
): BaseOptimizer {
  // Not `instanceof`: tf.Optimizer defines a duck-typed Symbol.hasInstance that every subclass inherits.
  if (template.constructor === AdamW) {
    return new AdamW({
      ...((template as AdamW).getConfig() as object),
      ...(noDecayVariables ? { excludeFromWeightDecay: (name: string) => noDecayVariables.has(name) } : {}),
    });
  }
  const cls = template.constructor as OptimizerClass;
  return cls.fromConfig(cls, template.getConfig());
}

/** The learning rate an optimizer was configured with. */
export function learningRateOf(optimizer: BaseOptimizer): number {
  const lr = optimizer.getConfig().learningRate;
  if (typeof lr !== 'number') throw new BadamOptionError('baseOptimizer learningRate', lr, 'a number');
  return lr;
}

/**
 * Sets the learning rate an optimizer uses at its next step. SGD and momentum cache `-lr` as a tensor, so
 * they are updated through their `setLearningRate`; the others read the `learningRate` field each step.
 */
export function setLearningRate(optimizer: BaseOptimizer, lr: number): void {
  const target = optimizer as BaseOptimizer & {
    setLearningRate?: (lr: number) => void;
    learningRate?: number;
  };
  if (target.learningRate === lr) return;
  if (typeof target.setLearningRate === 'function') target.setLearningRate(lr);
  else target.learningRate = lr;
}

/**
 * Frees everything an optimizer holds. `tf.train.momentum`'s own `dispose()` forgets the `-lr` scalar it
 * inherits from SGD (a tfjs bug), which would leak one tensor per block; it is freed here.
 */
export function disposeOptimizer(optimizer: BaseOptimizer): void {
  optimizer.dispose();
  const cached = (optimizer as BaseOptimizer & { c?: tf.Tensor }).c;
  if (cached !== undefined && !cached.isDisposed) cached.dispose();
}
