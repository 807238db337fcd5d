import { BadamOptionError } from './errors.js';

/** Checks that `value` is a finite number within the given bounds and returns it. */
export function requireNumber(
  option: string,
  value: unknown,
  bounds: { min?: number; max?: number; exclusiveMin?: boolean; exclusiveMax?: boolean } = {},
): number {
  const { min, max, exclusiveMin = false, exclusiveMax = false } = bounds;
  const parts: string[] = [];
  if (min !== undefined) parts.push(`${exclusiveMin ? '>' : '>='} ${min}`);
  if (max !== undefined) parts.push(`${exclusiveMax ? '<' : '<='} ${max}`);
  const expected = `a finite number${parts.length ? ` ${parts.join(' and ')}` : ''}`;
  if (typeof value !== 'number' || !Number.isFinite(value))
    throw new BadamOptionError(option, value, expected);
  if (min !== undefined && (exclusiveMin ? value <= min : value < min))
    throw new BadamOptionError(option, value, expected);
  if (max !== undefined && (exclusiveMax ? value >= max : value > max))
    throw new BadamOptionError(option, value, expected);
  return value;
}

/** Checks that `value` is a safe integer within the given bounds and returns it. */
export function requireInteger(
  option: string,
  value: unknown,
  bounds: { min?: number; max?: number } = {},
): number {
  const { min, max } = bounds;
  const parts: string[] = [];
  if (min !== undefined) parts.push(`>= ${min}`);
  if (max !== undefined) parts.push(`<= ${max}`);
  const expected = `an integer${parts.length ? ` ${parts.join(' and ')}` : ''}`;
  if (typeof value !== 'number' || !Number.isSafeInteger(value))
    throw new BadamOptionError(option, value, expected);
  if ((min !== undefined && value < min) || (max !== undefined && value > max))
    throw new BadamOptionError(option, value, expected);
  return value;
}

/** Checks that `value` is one of `allowed` and returns it, typed. */
export function requireOneOf<T extends string | number>(
  option: string,
  value: unknown,
  allowed: readonly T[],
): T {
  if (!(allowed as readonly unknown[]).includes(value)) {
    throw new BadamOptionError(option, value, `one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`);
  }
  return value as T;
}

/** Checks that `value` is a boolean and returns it. */
export function requireBoolean(option: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw new BadamOptionError(option, value, 'true or false');
  return value;
}

/** Checks that `value` is an array of non-empty strings and returns a copy. */
export function requireStringArray(option: string, value: unknown): string[] {
  if (!Array.isArray(value)) throw new BadamOptionError(option, value, 'an array of strings');
  value.forEach((item, i) => {
    if (typeof item !== 'string' || item.length === 0) {
      throw new BadamOptionError(`${option}[${i}]`, item, 'a non-empty string');
    }
  });
  return [...value];
}

/** Rejects option names that a plain-object options bag does not know, so typos fail loudly. */
export function rejectUnknownOptions(what: string, options: object, known: readonly string[]): void {
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new BadamOptionError(
        `${what}.${key}`,
        (options as Record<string, unknown>)[key],
        'absent: it is not an option',
        `known options: ${known.join(', ')}`,
      );
    }
  }
}

/**
 * Reads an option that has a deprecated old name: the new name wins, both at once is an error, and the old
 * one alone still works with a warning.
 */
export function optionWithDeprecatedName<K extends string, O extends string>(
  options: Partial<Record<K | O, unknown>>,
  name: K,
  oldName: O,
  warn: (message: string) => void,
): number | undefined {
  const value = options[name];
  const old = options[oldName];
  if (old === undefined) return value as number | undefined;
  if (value !== undefined) {
    throw new BadamOptionError(
      oldName,
      old,
      `absent when ${name} is given`,
      `${oldName} is the old name of ${name}`,
    );
  }
  warn(`option ${oldName} is deprecated; use ${name}`);
  return old as number;
}
