import { TRAINING_DEFAULTS } from '../defaults.js';
import { BadamOptionError } from '../errors.js';
import { requireNumber } from '../validation.js';
import type { ResolvedAdamWConfig } from './adamw.js';

/**
 * The base optimizer as plain data, the same on every backend: core's ReferenceBackend and @badam/cuda
 * run it themselves, @badam/tfjs builds its AdamW from it. Field names follow TensorFlow.js's optimizers
 * (`learningRate`, `epsilon`) and PyTorch's `betas`; defaults are core's `TRAINING_DEFAULTS.adamw`
 * (`torch.optim.AdamW`'s, except `weightDecay`, which is 0 as in Hugging Face's Trainer).
 *
 * @example
 * ```ts
 * const baseOptimizer: OptimizerDescription = { type: 'adamw', learningRate: 1e-5, weightDecay: 0.01 };
 * new BlockOptimizer({ baseOptimizer, namedParameters, switchBlockEvery: 100 }, backend);
 * ```
 */
export interface OptimizerDescription {
  /** The update rule. Only AdamW (Adam when `weightDecay` is 0) for now. Default `'adamw'`. */
  readonly type?: 'adamw';
  /** Learning rate of the first step, when the BlockOptimizer is not given one. */
  readonly learningRate?: number;
  /** Adam's beta1 and beta2. Default [0.9, 0.999]. */
  readonly betas?: readonly [number, number];
  /** Added to the denominator. Default 1e-8. */
  readonly epsilon?: number;
  /** Decoupled weight decay, skipped for biases and normalisation weights. Default 0. */
  readonly weightDecay?: number;
  /** @deprecated Use `betas: [beta1, beta2]`. */
  readonly beta1?: number;
  /** @deprecated Use `betas: [beta1, beta2]`. */
  readonly beta2?: number;
  /** @deprecated Use `epsilon`. */
  readonly eps?: number;
}

/** An {@link OptimizerDescription} with every field present and validated. */
export interface ResolvedOptimizerDescription {
  readonly type: 'adamw';
  readonly learningRate: number | undefined;
  readonly betas: readonly [number, number];
  readonly epsilon: number;
  readonly weightDecay: number;
}

/** The update rules an {@link OptimizerDescription} can name. */
export const OPTIMIZER_TYPES = ['adamw'] as const;

const FIELDS = ['type', 'learningRate', 'betas', 'epsilon', 'weightDecay', 'beta1', 'beta2', 'eps'];
const DEPRECATED: Readonly<Record<string, string>> = {
  beta1: 'betas: [beta1, beta2]',
  beta2: 'betas: [beta1, beta2]',
  eps: 'epsilon',
};

/**
 * True for a plain object: an {@link OptimizerDescription} rather than an optimizer instance of some
 * tensor library (which a backend such as @badam/tfjs accepts as well).
 */
export function isOptimizerDescription(value: unknown): value is OptimizerDescription {
  if (typeof value !== 'object' || value === null) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** The descriptions {@link resolveOptimizerDescription} made (frozen): valid as they are. */
const RESOLVED = new WeakSet<object>();

/**
 * Validates an {@link OptimizerDescription} and fills in its defaults. The deprecated field names
 * `beta1`, `beta2` and `eps` are still read; `onDeprecated` hears about each one used.
 *
 * The result is frozen, and resolving it again returns it as it is: a description is validated once, where
 * it enters (a plan, a BlockOptimizer), and the layers it is handed down to (the optimizer engine, a
 * backend's update at every block) do not check it again.
 *
 * @throws BadamOptionError naming the field, its value and what is allowed.
 */
export function resolveOptimizerDescription(
  description: OptimizerDescription = {},
  onDeprecated?: (message: string) => void,
): ResolvedOptimizerDescription {
  if (RESOLVED.has(description)) return description as ResolvedOptimizerDescription;
  if (!isOptimizerDescription(description)) {
    throw new BadamOptionError(
      'baseOptimizer',
      description,
      "an optimizer description such as { type: 'adamw', learningRate: 1e-5, weightDecay: 0.01 }",
    );
  }
  const d = description as Record<string, unknown>;
  for (const key of Object.keys(d)) {
    if (!FIELDS.includes(key)) {
      throw new BadamOptionError(
        `baseOptimizer.${key}`,
        d[key],
        'absent: it is not a field of an optimizer description',
        `known fields: ${FIELDS.filter((f) => !(f in DEPRECATED)).join(', ')}`,
      );
    }
    const replacement = DEPRECATED[key];
    if (replacement !== undefined && d[key] !== undefined) {
      onDeprecated?.(`baseOptimizer.${key} is deprecated; use ${replacement}`);
    }
  }
  const type = d.type ?? 'adamw';
  if (!OPTIMIZER_TYPES.includes(type as 'adamw')) {
    throw new BadamOptionError('baseOptimizer.type', type, `one of ${OPTIMIZER_TYPES.join(', ')}`);
  }
  if (d.betas !== undefined && (d.beta1 !== undefined || d.beta2 !== undefined)) {
    throw new BadamOptionError(
      'baseOptimizer.beta1',
      d.beta1 ?? d.beta2,
      'absent when betas is given',
      'beta1 and beta2 are the deprecated spelling of betas; keep betas',
    );
  }
  if (d.epsilon !== undefined && d.eps !== undefined) {
    throw new BadamOptionError('baseOptimizer.eps', d.eps, 'absent when epsilon is given');
  }
  const defaults = TRAINING_DEFAULTS.adamw;
  let betas: [unknown, unknown] = [d.beta1 ?? defaults.betas[0], d.beta2 ?? defaults.betas[1]];
  if (d.betas !== undefined) {
    if (!Array.isArray(d.betas) || d.betas.length !== 2) {
      throw new BadamOptionError('baseOptimizer.betas', d.betas, 'two numbers [beta1, beta2] in [0, 1)');
    }
    betas = [d.betas[0], d.betas[1]];
  }
  const inUnit = { min: 0, max: 1, exclusiveMax: true };
  const resolved: ResolvedOptimizerDescription = {
    type: 'adamw',
    learningRate:
      d.learningRate === undefined
        ? undefined
        : requireNumber('baseOptimizer.learningRate', d.learningRate, { min: 0 }),
    betas: [
      requireNumber(`baseOptimizer.${d.beta1 !== undefined ? 'beta1' : 'betas[0]'}`, betas[0], inUnit),
      requireNumber(`baseOptimizer.${d.beta2 !== undefined ? 'beta2' : 'betas[1]'}`, betas[1], inUnit),
    ],
    epsilon: requireNumber(
      `baseOptimizer.${d.eps !== undefined ? 'eps' : 'epsilon'}`,
      d.epsilon ?? d.eps ?? defaults.epsilon,
      {
        min: 0,
        exclusiveMin: true,
      },
    ),
    weightDecay: requireNumber('baseOptimizer.weightDecay', d.weightDecay ?? defaults.weightDecay, {
      min: 0,
    }),
  };
  Object.freeze(resolved.betas);
  RESOLVED.add(Object.freeze(resolved));
  return resolved;
}

/** The AdamW hyperparameters of a description, as {@link adamwUpdate} takes them. */
export function adamwConfigOf(description: OptimizerDescription = {}): ResolvedAdamWConfig {
  const { betas, epsilon, weightDecay } = resolveOptimizerDescription(description);
  return { beta1: betas[0], beta2: betas[1], eps: epsilon, weightDecay };
}
