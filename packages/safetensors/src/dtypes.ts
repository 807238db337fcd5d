import { ARRAY_DTYPE_BYTES, type ArrayDType } from '@badam/core';

/** The dtype names of the safetensors format that this package reads and writes. */
export type SafetensorsDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

/** safetensors dtype -> core's array dtype. */
export const FROM_SAFETENSORS: Readonly<Record<SafetensorsDType, ArrayDType>> = {
  F64: 'float64',
  F32: 'float32',
  F16: 'float16',
  BF16: 'bfloat16',
  I64: 'int64',
  I32: 'int32',
  I16: 'int16',
  I8: 'int8',
  U8: 'uint8',
  BOOL: 'bool',
};

/** core's array dtype -> safetensors dtype. */
export const TO_SAFETENSORS: Readonly<Record<ArrayDType, SafetensorsDType>> = Object.fromEntries(
  Object.entries(FROM_SAFETENSORS).map(([k, v]) => [v, k]),
) as Record<ArrayDType, SafetensorsDType>;

export function isSafetensorsDType(value: unknown): value is SafetensorsDType {
  return typeof value === 'string' && value in FROM_SAFETENSORS;
}

/** Bytes per element of a safetensors dtype. */
export function safetensorsBytes(dtype: SafetensorsDType): number {
  return ARRAY_DTYPE_BYTES[FROM_SAFETENSORS[dtype]];
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** bfloat16 bits -> fp32 values. */
export function bfloat16ToFloat32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const outBits = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) outBits[i] = bits[i]! << 16;
  return out;
}

/** fp32 values -> bfloat16 bits, rounding to nearest even (NaN stays NaN). */
export function float32ToBfloat16(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    f32[0] = values[i]!;
    const bits = u32[0]!;
    if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x007fffff) !== 0) {
      out[i] = (bits >>> 16) | 0x0040;
      continue;
    }
    out[i] = ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
  }
  return out;
}

/** IEEE float16 bits -> fp32 values (subnormals, infinities and NaN included). */
export function float16ToFloat32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i]!;
    const sign = h & 0x8000 ? -1 : 1;
    const exponent = (h >>> 10) & 0x1f;
    const mantissa = h & 0x3ff;
    if (exponent === 0) out[i] = sign * mantissa * 2 ** -24;
    else if (exponent === 31) out[i] = mantissa === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
    else out[i] = sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
  }
  return out;
}

/** fp32 values -> IEEE float16 bits, rounding to nearest even; overflow gives infinity. */
export function float32ToFloat16(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const x = values[i]!;
    if (Number.isNaN(x)) {
      out[i] = 0x7e00;
      continue;
    }
    const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
    const a = Math.abs(x);
    if (a >= 65520) {
      out[i] = sign | 0x7c00;
      continue;
    }
    if (a < 2 ** -24 / 2) {
      out[i] = sign; // rounds to zero (exactly half of the smallest subnormal rounds to even: zero)
      continue;
    }
    const exponent = Math.max(Math.floor(Math.log2(a)), -14);
    const ulp = 2 ** (exponent - 10);
    let q = Math.round(a / ulp);
    if (q - a / ulp === 0.5 && q % 2 === 1) q -= 1;
    // q is the significand in units of ulp: 1024..2048 for normals (2048 carries into the next exponent).
    if (exponent === -14 && q < 1024) {
      out[i] = sign | q;
    } else {
      let e = exponent;
      if (q === 2048) {
        q = 1024;
        e += 1;
      }
      out[i] = e + 15 >= 31 ? sign | 0x7c00 : sign | ((e + 15) << 10) | (q - 1024);
    }
  }
  return out;
}
