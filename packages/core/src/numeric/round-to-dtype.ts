import type { DType } from '../dtype.js';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/**
 * Rounds an fp32 value to the nearest bfloat16 (round to nearest, ties to even), returned as a number.
 * NaN stays NaN; values beyond bf16's range become ±Infinity, as on the GPU.
 */
export function roundToBfloat16(value: number): number {
  f32[0] = value;
  const bits = u32[0]!;
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x007fffff) !== 0) return Number.NaN;
  u32[0] = ((bits + 0x7fff + ((bits >>> 16) & 1)) & 0xffff0000) >>> 0;
  return f32[0]!;
}

/**
 * Rounds an fp32 value to the nearest IEEE float16 (round to nearest, ties to even, subnormals kept),
 * returned as a number. Overflow gives ±Infinity.
 */
export function roundToFloat16(value: number): number {
  const x = Math.fround(value);
  if (!Number.isFinite(x) || x === 0) return x;
  const abs = Math.abs(x);
  if (abs >= 65520) return Math.sign(x) * Number.POSITIVE_INFINITY; // 65520 rounds up past the largest half
  // Spacing of float16 values around |x|: 2^(e-10) for normals, 2^-24 for subnormals.
  const exponent = Math.max(Math.floor(Math.log2(abs)), -14);
  const ulp = 2 ** (exponent - 10);
  const scaled = abs / ulp;
  let rounded = Math.round(scaled);
  if (rounded - scaled === 0.5 && rounded % 2 === 1) rounded -= 1; // Math.round ties up; float16 ties to even
  return Math.sign(x) * rounded * ulp;
}

/** Rounds every element of `values` in place to what `dtype` can hold (fp32: unchanged). */
export function roundToDType(values: Float32Array, dtype: DType): Float32Array {
  if (dtype === 'float32') return values;
  const round = dtype === 'bfloat16' ? roundToBfloat16 : roundToFloat16;
  for (let i = 0; i < values.length; i++) values[i] = round(values[i]!);
  return values;
}
