/**
 * A named tensor as plain data: what checkpoints, safetensors files and backends exchange without a
 * tensor library. 16-bit floats are kept as their raw bits in a `Uint16Array`.
 */
export interface NamedArray {
  readonly name: string;
  readonly dtype: ArrayDType;
  readonly shape: readonly number[];
  readonly data: ArrayDataFor<ArrayDType>;
}

/** Element types a {@link NamedArray} can hold. */
export type ArrayDType =
  | 'float64'
  | 'float32'
  | 'float16'
  | 'bfloat16'
  | 'int64'
  | 'int32'
  | 'int16'
  | 'int8'
  | 'uint8'
  | 'bool';

/** The typed array that stores each {@link ArrayDType}. */
export type ArrayDataFor<D extends ArrayDType> = D extends 'float64'
  ? Float64Array
  : D extends 'float32'
    ? Float32Array
    : D extends 'float16' | 'bfloat16'
      ? Uint16Array
      : D extends 'int64'
        ? BigInt64Array
        : D extends 'int32'
          ? Int32Array
          : D extends 'int16'
            ? Int16Array
            : D extends 'int8'
              ? Int8Array
              : Uint8Array;

/** Bytes per element of each {@link ArrayDType}. */
export const ARRAY_DTYPE_BYTES: Readonly<Record<ArrayDType, number>> = {
  float64: 8,
  float32: 4,
  float16: 2,
  bfloat16: 2,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
};

/**
 * True when every element of `array` is a finite number (no NaN, no infinity). 16-bit floats are judged by
 * their exponent bits; integer and boolean arrays are always finite.
 */
export function isFiniteArray(array: NamedArray): boolean {
  const { dtype, data } = array;
  if (dtype === 'float32' || dtype === 'float64') {
    const values = data as Float32Array | Float64Array;
    for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i]!)) return false;
    return true;
  }
  if (dtype === 'bfloat16' || dtype === 'float16') {
    const exponent = dtype === 'bfloat16' ? 0x7f80 : 0x7c00;
    const bits = data as Uint16Array;
    for (let i = 0; i < bits.length; i++) if ((bits[i]! & exponent) === exponent) return false;
    return true;
  }
  return true;
}

/** The names of the arrays that hold a NaN or an infinity (see {@link isFiniteArray}). */
export function nonFiniteArrays(arrays: readonly NamedArray[]): string[] {
  return arrays.filter((array) => !isFiniteArray(array)).map((array) => array.name);
}
