/**
 * Errors raised by @badam/core. Every message names the offending value, what was expected and, where
 * one exists, the fix — a user should never need a stack trace to know what to change.
 */

/** Renders a value for an error message: strings quoted, arrays and objects as compact JSON. */
export function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint')
    return String(value);
  if (value === undefined) return 'undefined';
  if (value === null) return 'null';
  try {
    const json = JSON.stringify(value);
    return json.length > 120 ? `${json.slice(0, 117)}...` : json;
  } catch {
    return Object.prototype.toString.call(value);
  }
}

/**
 * An option (constructor argument, CLI flag, config field) has a value that is not allowed.
 *
 * @example
 * ```ts
 * throw new BadamOptionError('switchBlockEvery', 0, 'an integer >= 1, or -1 to never switch');
 * // switchBlockEvery must be an integer >= 1, or -1 to never switch, got 0
 * ```
 */
export class BadamOptionError extends Error {
  override readonly name = 'BadamOptionError';

  constructor(
    /** The option's name as the user wrote it. */
    readonly option: string,
    /** The rejected value. */
    readonly value: unknown,
    /** What is allowed, phrased to follow "must be". */
    readonly expected: string,
    /** An optional hint on how to fix it. */
    readonly hint?: string,
  ) {
    super(`${option} must be ${expected}, got ${describeValue(value)}${hint ? ` (${hint})` : ''}`);
  }
}

/** The block partition is inconsistent with the model's parameters (a prefix matches nothing, a parameter sits in two blocks, ...). */
export class BadamPartitionError extends Error {
  override readonly name = 'BadamPartitionError';
}

/** A saved state (from `state()`) cannot be loaded into this optimizer or schedule. */
export class BadamStateError extends Error {
  override readonly name = 'BadamStateError';
}
