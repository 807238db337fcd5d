import { BadamStateError, type NamedArray } from '@badam/core';
import * as tf from '@tensorflow/tfjs-core';
import type { NamedTensor } from './named-tensor.js';
import type { NamedVariable } from './named-variables.js';

/**
 * A parameter as a saved optimizer config knows it: BAdam's name for it, its shape, and the name its
 * tf.Variable had when the config was written (to find the variable again in a loaded model).
 */
export interface SavedParameter {
  readonly name: string;
  readonly shape: readonly number[];
  readonly variable: string;
}

/** The saved form of parameters: see {@link SavedParameter}. */
export function savedParametersOf(named: readonly NamedVariable[]): SavedParameter[] {
  return named.map(([name, variable]) => ({ name, shape: [...variable.shape], variable: variable.name }));
}

/**
 * A value for a tf.serialization config that survives tfjs-layers: a LayersModel's training config goes
 * through `convertPythonicToTs` when it is loaded, which camel-cases every string (`up_proj` becomes
 * `upProj`). Base64 has no underscores, so names and prefixes come back as they were.
 */
export function encodeConfigValue(value: unknown): string {
  const bytes = new TextEncoder().encode(JSON.stringify(value));
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/** Reads {@link encodeConfigValue}; `what` names the config entry in the error. */
export function decodeConfigValue(text: unknown, what: string): unknown {
  if (typeof text !== 'string') {
    throw new BadamStateError(
      `${what} must be the base64 JSON string that getConfig() writes, got ${typeof text}`,
    );
  }
  const binary = atob(text);
  return JSON.parse(new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0))));
}

/** Plain JSON as an int32 tensor of its UTF-8 bytes: how an optimizer's schedule travels among its weights. */
function jsonTensor(value: unknown): tf.Tensor1D {
  return tf.tensor1d(Array.from(new TextEncoder().encode(JSON.stringify(value))), 'int32');
}

/** Reads {@link jsonTensor}. */
async function tensorJson(tensor: tf.Tensor): Promise<unknown> {
  const bytes = Uint8Array.from(await tensor.data());
  return JSON.parse(new TextDecoder().decode(bytes));
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** A variable's name without the `_<n>` tfjs-layers adds when a name is taken (`dense/kernel_2` -> `dense/kernel`). */
function baseVariableName(name: string): string {
  return name.replace(/_\d+$/, '');
}

/**
 * The variables of saved parameters, found among tfjs's registered variables by the name each had when
 * saved, up to the `_<n>` suffix tfjs-layers adds when a name is taken (the saving model, or the loaded
 * one, may have been the second of its kind in its process), and by shape; the most recently created
 * wins. This is how an optimizer that `tf.loadLayersModel` made from a config finds the loaded model's
 * variables when `setWeights` gives it its state; its first `minimize` then checks them against the
 * model's.
 */
export function variablesFromRegistry(saved: readonly SavedParameter[], who: string): NamedVariable[] {
  const registered = Object.values(tf.engine().registeredVariables);
  return saved.map((p) => {
    const base = baseVariableName(p.variable);
    let found: tf.Variable | undefined;
    for (const v of registered) {
      if (baseVariableName(v.name) === base && sameShape(v.shape, p.shape)) found = v;
    }
    if (found === undefined) {
      throw new BadamStateError(
        `${who}: no tf.Variable named ${base} (or ${base}_<n>) of shape [${p.shape}] for parameter ${p.name}; ` +
          "build or load the model before setting the optimizer's weights, or create the optimizer with namedParameters",
      );
    }
    return [p.name, found] as const;
  });
}

/**
 * The variables of saved parameters taken by position from the list `LayersModel.fit` passes to
 * `minimize` (the model's trainable weights, in the order they were saved in).
 */
export function variablesFromList(
  saved: readonly SavedParameter[],
  varList: readonly tf.Variable[] | undefined,
  who: string,
): NamedVariable[] {
  const fits =
    varList !== undefined &&
    varList.length === saved.length &&
    saved.every((p, i) => sameShape(varList[i]!.shape, p.shape));
  if (!fits) {
    throw new BadamStateError(
      `${who} was made from a config and has no variables yet, and ${varList === undefined ? 'no variable list was given' : `the ${varList.length} variables given do not match the ${saved.length} saved parameters in number and shape`}; ` +
        "train it with the model it was saved with (model.fit passes the model's weights), or create it with namedParameters",
    );
  }
  return saved.map((p, i) => [p.name, varList![i]!] as const);
}

/**
 * Throws when none of the variables an optimizer trains is among those `minimize` was asked to train: the
 * optimizer then belongs to another model (or found the wrong variables). A partial overlap is allowed (a
 * model's frozen layers are not in `LayersModel.fit`'s list, and the active block decides what trains).
 */
export function assertVariablesListed(
  named: readonly NamedVariable[],
  varList: readonly tf.Variable[] | undefined,
  who: string,
): void {
  if (varList === undefined || varList.length === 0) return;
  const listed = new Set(varList);
  if (named.some(([, variable]) => listed.has(variable))) return;
  const [name, variable] = named[0]!;
  throw new BadamStateError(
    `${who} trains none of the ${varList.length} variables minimize() was given (it trains ${name}, variable ${variable.name}, ...); ` +
      'the optimizer belongs to another model: give each model its own optimizer',
  );
}

/**
 * The `trainable` flags of variables as they were before an optimizer changed them, so that its
 * `dispose()` gives the variables back as it found them (tf's other optimizers then train them again).
 */
export class TrainableFlags {
  private readonly saved: ReadonlyArray<readonly [tf.Variable, boolean]>;

  constructor(variables: Iterable<tf.Variable>) {
    this.saved = [...variables].map((v) => [v, v.trainable] as const);
  }

  /** Sets every variable that still exists back to its original flag. */
  restore(): void {
    for (const [variable, trainable] of this.saved) {
      if (!variable.isDisposed) variable.trainable = trainable;
    }
  }
}

/** Prefix of a BAdam optimizer's weights: its state JSON and its named optimizer tensors. */
const WEIGHT_PREFIX = 'badam/';

/**
 * A BAdam optimizer's weights as tf.Optimizers give them: the iteration count first, then the optimizer's
 * own state as JSON in an int32 tensor named `badam/<stateName>`, then its tensors as `badam/<name>`. The
 * caller owns the new tensors.
 */
export function optimizerWeights(
  iterations: NamedTensor,
  stateName: string,
  state: unknown,
  arrays: readonly NamedArray[],
): NamedTensor[] {
  return [
    iterations,
    { name: `${WEIGHT_PREFIX}${stateName}`, tensor: jsonTensor(state) },
    ...arrays.map((a) => ({
      name: `${WEIGHT_PREFIX}${a.name}`,
      tensor: tf.tensor(a.data as Float32Array, [...a.shape], 'float32'),
    })),
  ];
}

/** Reads {@link optimizerWeights} (without the iteration count, which tf.Optimizer's `extractIterations` takes). */
export async function readOptimizerWeights(
  weights: readonly NamedTensor[],
  stateName: string,
  who: string,
): Promise<{ state: unknown; arrays: NamedArray[] }> {
  const stateWeight = weights.find((w) => w.name === `${WEIGHT_PREFIX}${stateName}`);
  if (stateWeight === undefined) {
    throw new BadamStateError(
      `${who}.setWeights: no ${WEIGHT_PREFIX}${stateName} among the weights (${weights
        .slice(0, 3)
        .map((w) => w.name)
        .join(', ')}...); give it the weights a ${who}'s getWeights() returned`,
    );
  }
  const arrays: NamedArray[] = [];
  for (const w of weights) {
    if (w === stateWeight || !w.name.startsWith(WEIGHT_PREFIX)) continue;
    arrays.push({
      name: w.name.slice(WEIGHT_PREFIX.length),
      dtype: 'float32',
      shape: [...w.tensor.shape],
      data: Float32Array.from(await w.tensor.data()),
    });
  }
  return { state: await tensorJson(stateWeight.tensor), arrays };
}
