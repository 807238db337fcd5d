import { BadamOptionError, type NamedParameterInfo } from '@badam/core';
import type * as tf from '@tensorflow/tfjs-core';

/** A model parameter as BAdam sees it on tfjs: its name (HF style, e.g. `model.layers.0.mlp.up_proj.weight`) and its variable. */
export type NamedVariable = readonly [name: string, variable: tf.Variable];

/** The slice of a `tf.LayersModel` the conversion needs (duck-typed, so tfjs-layers stays optional). */
export interface LayersModelLike {
  readonly trainableWeights: ReadonlyArray<{ readonly name: string; read(): tf.Tensor }>;
}

/**
 * The trainable weights of a `tf.LayersModel` as {@link NamedVariable}s. Layer variables are named
 * `<layer name>/<weight name>`; by default the `/` becomes `.`, so a layer named `layers.3.mlp` gives
 * `layers.3.mlp.kernel` and BAdam's layer partition finds it. Pass `rename` for another mapping.
 *
 * @example
 * ```ts
 * const optimizer = new BlockOptimizer({
 *   baseOptimizer: tf.train.adam(1e-3),
 *   namedParameters: namedVariablesFromLayersModel(model),
 *   switchBlockEvery: 10,
 * });
 * model.compile({ optimizer, loss: 'categoricalCrossentropy' });
 * ```
 */
export function namedVariablesFromLayersModel(
  model: LayersModelLike,
  rename: (layerVariableName: string) => string = (name) => name.replaceAll('/', '.'),
): NamedVariable[] {
  return model.trainableWeights.map((weight) => {
    const variable = weight.read();
    if (!isVariable(variable)) {
      throw new BadamOptionError(
        `weight ${weight.name}`,
        typeof variable,
        'a tf.Variable (LayerVariable.read())',
      );
    }
    return [rename(weight.name), variable] as const;
  });
}

/**
 * True for a `tf.Variable`. Not `instanceof`: tf.Tensor defines a duck-typed `Symbol.hasInstance` that
 * tf.Variable inherits, so every tensor would pass.
 */
export function isVariable(value: unknown): value is tf.Variable {
  const candidate = value as Partial<tf.Variable> | null;
  return (
    typeof candidate === 'object' &&
    candidate !== null &&
    typeof candidate.assign === 'function' &&
    typeof candidate.trainable === 'boolean' &&
    typeof candidate.name === 'string'
  );
}

/** Validates `[name, tf.Variable]` pairs: non-empty unique names, float32 variables, each variable once. */
export function validateNamedVariables(
  namedParameters: unknown,
  option = 'namedParameters',
): NamedVariable[] {
  if (!Array.isArray(namedParameters) || namedParameters.length === 0) {
    throw new BadamOptionError(option, namedParameters, 'a non-empty array of [name, tf.Variable] pairs');
  }
  const names = new Set<string>();
  const variables = new Set<tf.Variable>();
  return namedParameters.map((entry: unknown, i) => {
    if (
      !Array.isArray(entry) ||
      entry.length !== 2 ||
      typeof entry[0] !== 'string' ||
      !isVariable(entry[1])
    ) {
      throw new BadamOptionError(`${option}[${i}]`, entry, 'a [name, tf.Variable] pair');
    }
    const [name, variable] = entry as [string, tf.Variable];
    if (names.has(name)) throw new BadamOptionError(`${option}[${i}]`, name, 'a unique name');
    if (variables.has(variable)) {
      throw new BadamOptionError(
        `${option}[${i}]`,
        name,
        'a variable not listed before',
        'tied weights are listed once',
      );
    }
    if (variable.dtype !== 'float32') {
      throw new BadamOptionError(`${option}[${i}] (${name}) dtype`, variable.dtype, "'float32'");
    }
    names.add(name);
    variables.add(variable);
    return [name, variable] as const;
  });
}

/** Core's view of the variables: name, shape and dtype (float32: tfjs has no 16-bit floating dtype). */
export function parameterInfoOf(namedVariables: readonly NamedVariable[]): NamedParameterInfo[] {
  return namedVariables.map(([name, variable]) => ({
    name,
    shape: [...variable.shape],
    dtype: 'float32' as const,
  }));
}
