import {
  BadamOptionError,
  isOptimizerDescription,
  type OptimizerDescription,
  resolveOptimizerDescription,
} from '@badam/core';
import * as tf from '@tensorflow/tfjs-core';
import { AdamW } from './adamw.js';

/**
 * The base optimizers BlockOptimizer accepts: core's backend-neutral `OptimizerDescription`
 * (`{ type: 'adamw', ... }`, trained with {@link AdamW}), or any tf.Optimizer built from its config (all of
 * `tf.train.*`, and AdamW itself).
 */
export type BaseOptimizer = tf.Optimizer | OptimizerDescription;

type OptimizerClass = tf.serialization.SerializableConstructor<tf.Optimizer> & {
  fromConfig(
    cls: tf.serialization.SerializableConstructor<tf.Optimizer>,
    config: tf.serialization.ConfigDict,
  ): tf.Optimizer;
};

/**
 * Checks that `optimizer` is an optimizer description (validated by core) or a tf.Optimizer that can be
 * re-created from its config, and returns it as given.
 */
export function validateBaseOptimizer(optimizer: unknown): BaseOptimizer {
  resolveBaseOptimizer(optimizer);
  return optimizer as BaseOptimizer;
}

/**
 * A base optimizer as BAdam's engine takes it: a description resolved by core (validated once, defaults
 * filled in, so that the engine and every block's fresh optimizer take it as it is), or a tf.Optimizer that
 * can be re-created from its config. `onDeprecated` hears about deprecated description fields.
 */
export function resolveBaseOptimizer(
  optimizer: unknown,
  onDeprecated?: (message: string) => void,
): BaseOptimizer {
  if (isOptimizerDescription(optimizer)) return resolveOptimizerDescription(optimizer, onDeprecated);
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
      "an optimizer description ({ type: 'adamw', ... }) or a tf.Optimizer (tf.train.sgd, momentum, rmsprop, adagrad, adadelta, adam, adamax, AdamW)",
    );
  }
  return optimizer as tf.Optimizer;
}

/**
 * A new tf.Optimizer with empty state for `template`: an {@link AdamW} for an optimizer description, else
 * one of the template's class and hyperparameters. BAdam starts every block with one: `tf.train.adam`
 * keeps its beta powers for the whole optimizer and its moments by position in the gradient list, so
 * reusing one instance across blocks would carry stale state over. For AdamW, `excludeFromWeightDecay` is
 * set from core's no-decay rule for the block's parameters.
 */
export function freshOptimizerLike(
  template: BaseOptimizer,
  noDecayVariables?: ReadonlySet<string>,
): tf.Optimizer {
  const exclude = noDecayVariables
    ? { excludeFromWeightDecay: (name: string) => noDecayVariables.has(name) }
    : {};
  if (isOptimizerDescription(template)) {
    const d = resolveOptimizerDescription(template);
    return new AdamW({
      learningRate: d.learningRate ?? 0,
      beta1: d.betas[0],
      beta2: d.betas[1],
      epsilon: d.epsilon,
      weightDecay: d.weightDecay,
      ...exclude,
    });
  }
  // Not `instanceof`: tf.Optimizer defines a duck-typed Symbol.hasInstance that every subclass inherits.
  if (template.constructor === AdamW) {
    return new AdamW({ ...((template as AdamW).getConfig() as object), ...exclude });
  }
  const cls = template.constructor as OptimizerClass;
  return cls.fromConfig(cls, template.getConfig());
}

/** The learning rate an optimizer was configured with (undefined for a description without one). */
export function learningRateOf(optimizer: BaseOptimizer): number | undefined {
  if (isOptimizerDescription(optimizer)) return optimizer.learningRate;
  const lr = optimizer.getConfig().learningRate;
  if (typeof lr !== 'number') throw new BadamOptionError('baseOptimizer learningRate', lr, 'a number');
  return lr;
}

/** A short name of the base optimizer for logs: the tf class name, or `AdamW` for a description. */
export function baseOptimizerName(optimizer: BaseOptimizer): string {
  return isOptimizerDescription(optimizer) ? 'AdamW' : optimizer.getClassName();
}

/**
 * Sets the learning rate an optimizer uses at its next step; `lr` was checked where it entered (the
 * BlockOptimizer's `lr`, the trainer backend's `learningRate`). SGD and momentum cache `-lr` as a tensor,
 * so they are updated through their `setLearningRate`; the others (AdamW too: its `setLearningRate` is the
 * checking entry point for its own users) read the `learningRate` field each step.
 */
export function setLearningRate(optimizer: tf.Optimizer, lr: number): void {
  const target = optimizer as tf.Optimizer & {
    setLearningRate?: (lr: number) => void;
    learningRate?: number;
  };
  if (target.learningRate === lr) return;
  if (typeof target.setLearningRate === 'function' && target.constructor !== AdamW)
    target.setLearningRate(lr);
  else target.learningRate = lr;
}

/**
 * Frees everything an optimizer holds. `tf.train.momentum`'s own `dispose()` forgets the `-lr` scalar it
 * inherits from SGD (a tfjs bug), which would leak one tensor per block; it is freed here.
 */
export function disposeOptimizer(optimizer: tf.Optimizer): void {
  optimizer.dispose();
  const cached = (optimizer as tf.Optimizer & { c?: tf.Tensor }).c;
  if (cached !== undefined && !cached.isDisposed) cached.dispose();
}

/** A base optimizer as plain data for a config: a description as it is, a tf.Optimizer as its class name and config. */
export function serializeBaseOptimizer(optimizer: BaseOptimizer): tf.serialization.ConfigDict {
  return isOptimizerDescription(optimizer)
    ? { description: { ...optimizer } as unknown as tf.serialization.ConfigDict }
    : { className: optimizer.getClassName(), config: optimizer.getConfig() };
}

/** Reads {@link serializeBaseOptimizer}: a tf.Optimizer comes back through tf.serialization's class registry. */
export function deserializeBaseOptimizer(saved: unknown): BaseOptimizer {
  const s = (saved ?? {}) as {
    description?: unknown;
    className?: unknown;
    config?: tf.serialization.ConfigDict;
  };
  // The BlockOptimizer the config makes checks the description.
  if (s.description !== undefined) return s.description as BaseOptimizer;
  const entry =
    typeof s.className === 'string'
      ? tf.serialization.SerializationMap.getMap().classNameMap[s.className]
      : undefined;
  if (entry === undefined) {
    throw new BadamOptionError(
      'baseOptimizer className',
      s.className,
      'a tf.Optimizer class registered with tf.serialization.registerClass (tf.train.* and AdamW are)',
      'import the module that registers it before loading',
    );
  }
  const [cls, fromConfig] = entry;
  return validateBaseOptimizer(fromConfig(cls, s.config ?? {}));
}
