import { BadamOptionError, type NamedParameterInfo } from '@badam/core';
import type * as tf from '@tensorflow/tfjs-core';

/** A model parameter as BAdam sees it on tfjs: its name (HF style, e.g. `model.layers.0.mlp.up_proj.weight`) and its variable. */
export type NamedVariable = readonly [name: string, variable: tf.Variable];

/** A layer's weight as tfjs-layers has it (`LayerVariable`). */
export interface LayerWeightLike {
  /** Unique in the process: tfjs-layers adds `_<n>` when the name is taken (a model loaded twice). */
  readonly name: string;
  /** The name without that suffix, `<layer name>/<weight name>`: the same in every copy of the model. */
  readonly originalName?: string;
  read(): tf.Tensor;
}

/** The slice of a `tf.LayersModel` the conversion needs (duck-typed, so tfjs-layers stays optional). */
export interface LayersModelLike {
  readonly trainableWeights: readonly LayerWeightLike[];
}

/** The slice of a `tf.LayersModel` {@link blockPrefixesFromLayersModel} needs: its layers and their weights. */
export interface LayeredModelLike extends LayersModelLike {
  readonly layers: ReadonlyArray<{
    readonly name: string;
    readonly trainableWeights: readonly LayerWeightLike[];
  }>;
}

/** How a layer weight's name becomes a parameter name by default: `dense_1/kernel` -> `dense_1.kernel`. */
const defaultRename = (name: string) => name.replaceAll('/', '.');

/**
 * The trainable weights of a `tf.LayersModel` as {@link NamedVariable}s. Layer variables are named
 * `<layer name>/<weight name>` (the original name, without the `_<n>` tfjs-layers adds to a name taken
 * before); by default the `/` becomes `.`, so a layer named `layers.3.mlp` gives `layers.3.mlp.kernel` and
 * BAdam's layer partition finds it. Pass `rename` for another mapping. For layers with default names
 * (`dense_Dense1`), give the BlockOptimizer {@link blockPrefixesFromLayersModel} as `blockPrefixList`.
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
  rename: (layerVariableName: string) => string = defaultRename,
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
    return [rename(weight.originalName ?? weight.name), variable] as const;
  });
}

/** The segments two paths start with. */
function commonStart(a: readonly string[], b: readonly string[]): string[] {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return a.slice(0, n);
}

/**
 * One block per layer of a `tf.LayersModel`, whatever its layers are named: for each layer with trainable
 * weights, the prefix its parameter names share (with the names {@link namedVariablesFromLayersModel}
 * gives, and the same `rename`), as core's `blockPrefixList`. Layers come in model order, so `ascending`
 * trains the first layer first.
 *
 * @example
 * ```ts
 * const model = tf.sequential({ layers: [tf.layers.dense({ units: 8, inputShape: [4] }), tf.layers.dense({ units: 1 })] });
 * const optimizer = new BlockOptimizer({
 *   baseOptimizer: tf.train.adam(1e-3),
 *   namedParameters: namedVariablesFromLayersModel(model),
 *   blockPrefixList: blockPrefixesFromLayersModel(model), // [['dense_Dense1.'], ['dense_Dense2.']]
 *   switchBlockEvery: 10,
 * });
 * ```
 */
export function blockPrefixesFromLayersModel(
  model: LayeredModelLike,
  rename: (layerVariableName: string) => string = defaultRename,
): string[][] {
  const nameOf = (weight: LayerWeightLike) => rename(weight.originalName ?? weight.name);
  const all = model.trainableWeights.map(nameOf);
  const blocks: string[][] = [];
  for (const layer of model.layers) {
    const own = layer.trainableWeights.map(nameOf);
    if (own.length === 0) continue;
    // The longest dot-ended prefix all of the layer's names share (at least the part before their last segment).
    const shared = own.map((name) => name.split('.').slice(0, -1)).reduce(commonStart);
    const prefix = shared.length > 0 ? `${shared.join('.')}.` : '';
    const strays = all.filter((name) => name.includes(prefix) && !own.includes(name));
    if (prefix === '' || strays.length > 0) {
      throw new BadamOptionError(
        `layer ${layer.name}`,
        prefix === '' ? own.join(', ') : `prefix ${prefix} (also matches ${strays.join(', ')})`,
        "a prefix that names this layer's parameters only",
        'rename the layer, or write blockPrefixList by hand',
      );
    }
    blocks.push([prefix]);
  }
  return blocks;
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
