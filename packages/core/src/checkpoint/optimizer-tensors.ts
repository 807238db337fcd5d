import { BadamStateError } from '../errors.js';
import type { NamedArray } from '../named-array.js';
import { numel } from '../parameters.js';

/**
 * The names of the optimizer tensors in a checkpoint, the same on every backend: PyTorch's per-parameter
 * state keys, prefixed with the parameter's name (`model.layers.3.mlp.up_proj.weight.exp_avg`).
 * `master` (fp32 copy of a 16-bit weight) is BAdam's own. The keys of PyTorch's other optimizers are here
 * too, for a backend that trains with one of them (@badam/tfjs's tf.train optimizers).
 */
export const OPTIMIZER_STATE_KEYS = {
  /** Adam's first moment, fp32, the parameter's shape (BlockOptimizerRatio: its masked entries). */
  expAvg: 'exp_avg',
  /** Adam's second moment, fp32, the parameter's shape (BlockOptimizerRatio: its masked entries). */
  expAvgSq: 'exp_avg_sq',
  /** Updates since the state was created (Adam's t), an fp32 scalar as PyTorch stores it. */
  step: 'step',
  /** fp32 master copy of a 16-bit weight. */
  master: 'master',
  /** RMSprop's and Adadelta's running average of squared gradients. */
  squareAvg: 'square_avg',
  /** SGD momentum's and RMSprop's momentum buffer. */
  momentumBuffer: 'momentum_buffer',
  /** Centred RMSprop's running average of gradients. */
  gradAvg: 'grad_avg',
  /** Adagrad's sum of squared gradients. */
  sum: 'sum',
  /** Adadelta's running average of squared updates. */
  accDelta: 'acc_delta',
} as const;

/** The checkpoint name of one piece of a parameter's optimizer state: `<parameter>.<key>`. */
export function optimizerTensorName(parameter: string, key: string): string {
  return `${parameter}.${key}`;
}

/** One parameter's AdamW state as plain arrays. */
export interface AdamParameterState {
  readonly expAvg: Float32Array;
  readonly expAvgSq: Float32Array;
  /** Adam's t: updates since the block was activated. */
  readonly step: number;
  /** fp32 master of a 16-bit weight; absent for fp32 weights (their own master). */
  readonly master?: Float32Array | undefined;
}

/**
 * A parameter's AdamW state as checkpoint tensors: `<name>.exp_avg`, `<name>.exp_avg_sq`, `<name>.step`
 * and, for a 16-bit weight, `<name>.master`. Arrays are copied.
 */
export function adamStateTensors(
  parameter: { readonly name: string; readonly shape: readonly number[] },
  state: AdamParameterState,
): NamedArray[] {
  const { name, shape } = parameter;
  const k = OPTIMIZER_STATE_KEYS;
  const tensor = (key: string, data: Float32Array, s: readonly number[] = shape): NamedArray => ({
    name: optimizerTensorName(name, key),
    dtype: 'float32',
    shape: [...s],
    data: Float32Array.from(data),
  });
  const out = [
    tensor(k.expAvg, state.expAvg),
    tensor(k.expAvgSq, state.expAvgSq),
    tensor(k.step, Float32Array.of(state.step), []),
  ];
  if (state.master !== undefined) out.push(tensor(k.master, state.master));
  return out;
}

/**
 * Reads one parameter's AdamW state back from checkpoint tensors, checking that each piece is there,
 * fp32 and of the parameter's size, and that its step is `expectedStep` (the BlockOptimizer's count) or 0
 * (a parameter no update has reached yet, whose moments are zero).
 *
 * @throws BadamStateError naming the tensor and what is wrong with it.
 */
export function readAdamState(
  tensors: ReadonlyMap<string, NamedArray>,
  parameter: { readonly name: string; readonly shape: readonly number[] },
  options: { expectedStep?: number; master: boolean },
): AdamParameterState {
  const { name, shape } = parameter;
  const size = numel(shape);
  const k = OPTIMIZER_STATE_KEYS;
  const read = (key: string, n: number): Float32Array => {
    const tensorName = optimizerTensorName(name, key);
    const t = tensors.get(tensorName);
    if (t === undefined) {
      throw new BadamStateError(
        `optimizer state has no ${tensorName}; the checkpoint was saved with another active block or optimizer (it holds ${[...tensors.keys()].slice(0, 3).join(', ')}${tensors.size > 3 ? ', ...' : ''})`,
      );
    }
    if (t.dtype !== 'float32' || t.data.length !== n) {
      throw new BadamStateError(
        `optimizer tensor ${tensorName} is ${t.dtype} with ${t.data.length} values; expected float32 with ${n} (parameter shape [${shape.join(', ')}])`,
      );
    }
    return t.data as Float32Array;
  };
  const step = read(k.step, 1)[0]!;
  if (!Number.isSafeInteger(step) || step < 0) {
    throw new BadamStateError(
      `optimizer tensor ${optimizerTensorName(name, k.step)} is ${step}, not a step count`,
    );
  }
  // Step 0: a parameter that has had no update in the block yet (no gradient reached it): fresh state.
  if (options.expectedStep !== undefined && step !== options.expectedStep && step !== 0) {
    throw new BadamStateError(
      `optimizer tensor ${optimizerTensorName(name, k.step)} is ${step}, but the BlockOptimizer state says ${options.expectedStep} steps in the block; the two files come from different checkpoints`,
    );
  }
  return {
    expAvg: read(k.expAvg, size),
    expAvgSq: read(k.expAvgSq, size),
    step,
    ...(options.master && tensors.has(optimizerTensorName(name, k.master))
      ? { master: read(k.master, size) }
      : {}),
  };
}

/** Checkpoint tensors by name, for {@link readAdamState}. */
export function tensorsByName(tensors: readonly NamedArray[]): Map<string, NamedArray> {
  return new Map(tensors.map((t) => [t.name, t]));
}
