import { BadamOptionError } from './errors.js';

/** Floating-point storage types a parameter can have. */
export type DType = 'float32' | 'float16' | 'bfloat16';

/** All supported dtypes, in order of decreasing width. */
export const DTYPES: readonly DType[] = ['float32', 'float16', 'bfloat16'];

const BYTES: Record<DType, number> = { float32: 4, float16: 2, bfloat16: 2 };

const ALIASES: Record<string, DType> = {
  float32: 'float32',
  fp32: 'float32',
  f32: 'float32',
  float: 'float32',
  float16: 'float16',
  fp16: 'float16',
  f16: 'float16',
  half: 'float16',
  bfloat16: 'bfloat16',
  bf16: 'bfloat16',
};

/** Bytes one element of `dtype` occupies: 4 for float32, 2 for float16 and bfloat16. */
export function bytesPerElement(dtype: DType): number {
  const bytes = BYTES[dtype];
  if (bytes === undefined) throw new BadamOptionError('dtype', dtype, `one of ${DTYPES.join(', ')}`);
  return bytes;
}

/** True when `value` is one of the canonical {@link DType} names. */
export function isDType(value: unknown): value is DType {
  return typeof value === 'string' && (DTYPES as readonly string[]).includes(value);
}

/**
 * Parses a dtype as users write it (`bf16`, `bfloat16`, `fp16`, `half`, `fp32`, `float32`, ...) and as
 * Hugging Face writes it in config.json (`torch_dtype: "bfloat16"`). Case-insensitive.
 *
 * @example
 * ```ts
 * parseDType('bf16'); // 'bfloat16'
 * ```
 */
export function parseDType(text: string, option = 'dtype'): DType {
  const dtype = ALIASES[String(text).toLowerCase()];
  if (dtype === undefined) {
    throw new BadamOptionError(option, text, `one of ${Object.keys(ALIASES).join(', ')}`);
  }
  return dtype;
}
