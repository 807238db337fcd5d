import { bytesPerElement, type DType, isDType } from './dtype.js';
import { BadamOptionError } from './errors.js';

/**
 * What core knows about a model parameter: its name (as the model names it, e.g.
 * `model.layers.0.self_attn.q_proj.weight`), its shape and its storage dtype. Core never sees the values.
 */
export interface NamedParameterInfo {
  readonly name: string;
  readonly shape: readonly number[];
  readonly dtype: DType;
}

/** Number of elements of a tensor of `shape` (1 for a scalar). */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Bytes the parameter's values occupy in its own dtype. */
export function parameterBytes(parameter: NamedParameterInfo): number {
  return numel(parameter.shape) * bytesPerElement(parameter.dtype);
}

/** Total element count of a list of parameters. */
export function totalElements(parameters: readonly NamedParameterInfo[]): number {
  let n = 0;
  for (const p of parameters) n += numel(p.shape);
  return n;
}

/**
 * Validates a named parameter list: every entry has a non-empty unique name, a shape of non-negative
 * integers and a known dtype. Throws a {@link BadamOptionError} naming the first bad entry.
 */
export function validateNamedParameters(
  parameters: unknown,
  option = 'namedParameters',
): readonly NamedParameterInfo[] {
  if (!Array.isArray(parameters) || parameters.length === 0) {
    throw new BadamOptionError(option, parameters, 'a non-empty array of { name, shape, dtype }');
  }
  const seen = new Set<string>();
  parameters.forEach((p: unknown, i) => {
    const where = `${option}[${i}]`;
    if (typeof p !== 'object' || p === null)
      throw new BadamOptionError(where, p, 'an object { name, shape, dtype }');
    const { name, shape, dtype } = p as Record<string, unknown>;
    if (typeof name !== 'string' || name.length === 0) {
      throw new BadamOptionError(`${where}.name`, name, 'a non-empty string');
    }
    if (seen.has(name)) {
      throw new BadamOptionError(`${where}.name`, name, 'unique', 'each parameter name may appear once');
    }
    seen.add(name);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new BadamOptionError(`${where}.shape`, shape, 'an array of non-negative integers');
    }
    if (!isDType(dtype)) {
      throw new BadamOptionError(`${where}.dtype`, dtype, "one of 'float32', 'float16', 'bfloat16'");
    }
  });
  return parameters as readonly NamedParameterInfo[];
}
