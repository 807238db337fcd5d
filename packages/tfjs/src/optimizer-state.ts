import {
  BadamStateError,
  type NamedArray,
  OPTIMIZER_STATE_KEYS,
  optimizerTensorName,
  readAdamState,
  tensorsByName,
} from '@badam/core';
import * as tf from '@tensorflow/tfjs-core';
import type { NamedTensor } from './named-tensor.js';

/** A trained parameter as the converters see it: its BAdam name and its variable. */
export interface ParameterVariable {
  readonly name: string;
  readonly variable: tf.Variable;
}

/**
 * tfjs's per-variable state names and PyTorch's for the same quantity, per optimizer class, in the group
 * order of the class's `getWeights()` (positional optimizers lay out all of one group, then the next).
 */
const K = OPTIMIZER_STATE_KEYS;
const STATE_NAMES: Readonly<Record<string, ReadonlyArray<readonly [tfjs: string, torch: string]>>> = {
  BAdamAdamW: [
    ['m', K.expAvg],
    ['v', K.expAvgSq],
  ],
  Adam: [
    ['m', K.expAvg],
    ['v', K.expAvgSq],
  ],
  RMSProp: [
    ['rms', K.squareAvg],
    ['momentum', K.momentumBuffer],
    ['mg', K.gradAvg],
  ],
  Adagrad: [['accumulator', K.sum]],
  Adadelta: [
    ['accum_grad', K.squareAvg],
    ['accum_var', K.accDelta],
  ],
  Momentum: [['momentum', K.momentumBuffer]],
  SGD: [],
};

function stateNamesOf(optimizer: tf.Optimizer): ReadonlyArray<readonly [string, string]> {
  const names = STATE_NAMES[optimizer.getClassName()];
  if (names === undefined) {
    throw new BadamStateError(
      `cannot checkpoint the state of a ${optimizer.getClassName()} optimizer: BAdam knows the state of ${Object.keys(STATE_NAMES).join(', ')}; ` +
        "train with one of those, or with { type: 'adamw' }, to save and resume",
    );
  }
  return names;
}

async function weightsOf(optimizer: tf.Optimizer): Promise<NamedTensor[]> {
  try {
    return await optimizer.getWeights();
  } catch (error) {
    throw new BadamStateError(
      `cannot checkpoint the state of a ${optimizer.getClassName()} optimizer: TensorFlow.js says "${(error as Error).message}"`,
    );
  }
}

/**
 * A tf.Optimizer's state for `parameters` as checkpoint tensors under PyTorch's names (`<param>.exp_avg`,
 * `<param>.exp_avg_sq`, `<param>.step`, `<param>.momentum_buffer`, ...), parameter by parameter: the
 * format every BAdam backend reads. tf's shared iteration count becomes each parameter's `step`.
 */
export async function exportOptimizerState(
  optimizer: tf.Optimizer,
  parameters: readonly ParameterVariable[],
): Promise<NamedArray[]> {
  const names = stateNamesOf(optimizer);
  const [iter, ...weights] = await weightsOf(optimizer);
  const iterations = iter === undefined ? 0 : (await iter.tensor.data())[0]!;
  // tf's own optimizers make a fresh iterations scalar for each getWeights() and leave it to the caller;
  // AdamW frees the tensors it made at its next getWeights() or dispose().
  if (optimizer.getClassName() !== 'BAdamAdamW') iter?.tensor.dispose();
  const byVariable = new Map(parameters.map((p) => [p.variable.name, p.name]));
  const state = new Map<string, NamedArray>();
  for (const { name, tensor } of weights) {
    const slash = name.lastIndexOf('/');
    const parameter = byVariable.get(name.slice(0, slash));
    const suffix = name.slice(slash + 1);
    const key = suffix === 'step' ? OPTIMIZER_STATE_KEYS.step : names.find(([t]) => t === suffix)?.[1];
    if (parameter === undefined || key === undefined) {
      throw new BadamStateError(
        `${optimizer.getClassName()} holds state ${JSON.stringify(name)} that belongs to no trained parameter`,
      );
    }
    const data = Float32Array.from((await tensor.data()) as Float32Array);
    state.set(optimizerTensorName(parameter, key), {
      name: optimizerTensorName(parameter, key),
      dtype: 'float32',
      shape: key === OPTIMIZER_STATE_KEYS.step ? [] : [...tensor.shape],
      data,
    });
  }
  const out: NamedArray[] = [];
  for (const p of parameters) {
    const own = names.map(([, key]) => state.get(optimizerTensorName(p.name, key)));
    if (own.every((t) => t === undefined) && names.length > 0) continue; // no update reached it yet
    for (const t of own) if (t !== undefined) out.push(t);
    const step = optimizerTensorName(p.name, OPTIMIZER_STATE_KEYS.step);
    out.push(
      state.get(step) ?? { name: step, dtype: 'float32', shape: [], data: Float32Array.of(iterations) },
    );
  }
  return out;
}

/**
 * Restores {@link exportOptimizerState} (from any backend) into a fresh tf.Optimizer of the same kind for
 * the same `parameters`, whose updates so far number `step`. A block with no update yet has nothing to
 * restore.
 */
export async function importOptimizerState(
  optimizer: tf.Optimizer,
  parameters: readonly ParameterVariable[],
  tensors: readonly NamedArray[],
  step: number,
): Promise<void> {
  if (step === 0) return;
  const names = stateNamesOf(optimizer);
  const byName = tensorsByName(tensors);
  const list: NamedTensor[] = [{ name: 'iter', tensor: tf.scalar(step, 'int32') }];
  try {
    if (optimizer.getClassName() === 'BAdamAdamW') {
      // AdamW keeps its state by variable name, with a step count per variable.
      for (const p of parameters) {
        const s = readAdamState(
          byName,
          { name: p.name, shape: p.variable.shape },
          { expectedStep: step, master: false },
        );
        if (s.step === 0) continue;
        const v = p.variable;
        list.push({ name: `${v.name}/m`, tensor: tf.tensor(s.expAvg, v.shape) });
        list.push({ name: `${v.name}/v`, tensor: tf.tensor(s.expAvgSq, v.shape) });
        list.push({ name: `${v.name}/step`, tensor: tf.scalar(s.step, 'int32') });
      }
    } else {
      // Positional optimizers: each group (all m, then all v, ...) in the order of the parameters.
      const present = names.filter(([, key]) =>
        byName.has(optimizerTensorName(parameters[0]?.name ?? '', key)),
      );
      for (const [suffix, key] of present) {
        for (const p of parameters) {
          const name = optimizerTensorName(p.name, key);
          const t = byName.get(name);
          if (t === undefined || t.data.length !== p.variable.size) {
            throw new BadamStateError(
              t === undefined
                ? `optimizer state has no ${name}; the checkpoint was saved with another active block or optimizer`
                : `optimizer tensor ${name} has ${t.data.length} values, the parameter ${p.variable.size}`,
            );
          }
          list.push({
            name: `${p.variable.name}/${suffix}`,
            tensor: tf.tensor(t.data as Float32Array, p.variable.shape),
          });
        }
      }
    }
    await optimizer.setWeights(list);
  } finally {
    for (const t of list) t.tensor.dispose();
  }
}
