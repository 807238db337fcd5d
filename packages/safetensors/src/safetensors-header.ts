import type { NamedArray } from '@badam/core';
import {
  bfloat16ToFloat32,
  FROM_SAFETENSORS,
  float16ToFloat32,
  isSafetensorsDType,
  type SafetensorsDType,
  safetensorsBytes,
} from './dtypes.js';
import { SafetensorsError } from './safetensors-error.js';

/** One tensor's entry in a safetensors header. */
export interface SafetensorsEntry {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  /** Absolute byte range in the file. */
  readonly begin: number;
  readonly end: number;
}

/** Largest header accepted: real headers are kilobytes; a bigger length means a corrupt or foreign file. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** A validated header: the `__metadata__` strings and the tensors by name, in header order. */
export interface SafetensorsHeader {
  readonly metadata: Record<string, string>;
  readonly entries: Map<string, SafetensorsEntry>;
}

/**
 * The header length a file's first 8 bytes give, checked against the file's size: the one place the
 * truncation and absurd-length rules live, for files on disk and bytes in memory alike.
 */
export function headerLengthOf(path: string, lengthBytes: Uint8Array, size: number): number {
  if (size < 8) {
    throw new SafetensorsError(
      path,
      `truncated: ${size} bytes, but a safetensors file starts with an 8-byte header length`,
    );
  }
  const view = new DataView(lengthBytes.buffer, lengthBytes.byteOffset, 8);
  const headerLength = Number(view.getBigUint64(0, true));
  if (headerLength > MAX_HEADER_BYTES) {
    throw new SafetensorsError(
      path,
      `header length ${headerLength} is absurd (limit ${MAX_HEADER_BYTES} bytes): not a safetensors file, or corrupt`,
    );
  }
  if (8 + headerLength > size) {
    throw new SafetensorsError(
      path,
      `truncated: the header needs ${headerLength} bytes but the file has only ${size - 8} after the length`,
    );
  }
  return headerLength;
}

/**
 * Parses and validates a header's JSON (`headerBytes`, UTF-8) for a file of `size` bytes: every dtype,
 * shape and offset is checked against the data that follows, and tensors may not overlap.
 */
export function parseSafetensorsHeader(
  path: string,
  headerBytes: Uint8Array,
  size: number,
): SafetensorsHeader {
  const headerLength = headerBytes.length;
  const headerText = new TextDecoder('utf-8').decode(headerBytes);
  let header: unknown;
  try {
    header = JSON.parse(headerText);
  } catch (error) {
    throw new SafetensorsError(path, `header is not valid JSON (${(error as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new SafetensorsError(path, 'header is not a JSON object');
  }
  const dataStart = 8 + headerLength;
  const dataSize = size - dataStart;
  const metadata: Record<string, string> = {};
  const entries = new Map<string, SafetensorsEntry>();
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (
        typeof raw !== 'object' ||
        raw === null ||
        !Object.values(raw).every((v) => typeof v === 'string')
      ) {
        throw new SafetensorsError(path, '__metadata__ must map strings to strings');
      }
      Object.assign(metadata, raw);
      continue;
    }
    const info = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof info !== 'object' || info === null)
      throw new SafetensorsError(path, `tensor ${name}: entry is not an object`);
    if (!isSafetensorsDType(info.dtype)) {
      throw new SafetensorsError(
        path,
        `tensor ${name}: unknown dtype ${JSON.stringify(info.dtype)} (supported: ${Object.keys(FROM_SAFETENSORS).join(', ')})`,
      );
    }
    const shape = info.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new SafetensorsError(
        path,
        `tensor ${name}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`,
      );
    }
    const offsets = info.data_offsets;
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      offsets[0] > offsets[1]
    ) {
      throw new SafetensorsError(
        path,
        `tensor ${name}: data_offsets ${JSON.stringify(offsets)} is not [begin, end] with begin <= end`,
      );
    }
    const [begin, end] = offsets as [number, number];
    const expected = shape.reduce((a: number, b: number) => a * b, 1) * safetensorsBytes(info.dtype);
    if (end - begin !== expected) {
      throw new SafetensorsError(
        path,
        `tensor ${name}: data_offsets span ${end - begin} bytes but shape [${shape.join(', ')}] of ${info.dtype} needs ${expected}`,
      );
    }
    if (end > dataSize) {
      throw new SafetensorsError(
        path,
        `tensor ${name}: data_offsets [${begin}, ${end}] run past the data (${dataSize} bytes): the file is truncated or corrupt`,
      );
    }
    entries.set(name, { name, dtype: info.dtype, shape, begin: dataStart + begin, end: dataStart + end });
  }
  const sorted = [...entries.values()].sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]!.begin < sorted[i - 1]!.end) {
      throw new SafetensorsError(path, `tensors ${sorted[i - 1]!.name} and ${sorted[i]!.name} overlap`);
    }
  }
  return { metadata, entries };
}

/** A tensor's stored bytes as a typed array of its dtype (16-bit floats as raw bits). */
export function tensorFromBytes(entry: SafetensorsEntry, bytes: Uint8Array): NamedArray {
  const dtype = FROM_SAFETENSORS[entry.dtype];
  // A copy when the bytes are not aligned for the element type (a slice of a larger buffer).
  const own = bytes.byteOffset % 8 === 0 ? bytes : bytes.slice();
  const { buffer, byteOffset, byteLength } = own;
  const view = <T>(make: new (b: ArrayBufferLike, o: number, n: number) => T, size: number) =>
    new make(buffer, byteOffset, byteLength / size);
  const data =
    dtype === 'float64'
      ? view(Float64Array, 8)
      : dtype === 'float32'
        ? view(Float32Array, 4)
        : dtype === 'float16' || dtype === 'bfloat16'
          ? view(Uint16Array, 2)
          : dtype === 'int64'
            ? view(BigInt64Array, 8)
            : dtype === 'int32'
              ? view(Int32Array, 4)
              : dtype === 'int16'
                ? view(Int16Array, 2)
                : dtype === 'int8'
                  ? view(Int8Array, 1)
                  : own;
  return { name: entry.name, dtype, shape: entry.shape, data };
}

/** A floating-point tensor as fp32 (F16 and BF16 widened exactly, F64 rounded). */
export function tensorAsFloat32(path: string, entry: SafetensorsEntry, array: NamedArray): Float32Array {
  switch (array.dtype) {
    case 'float32':
      return array.data as Float32Array;
    case 'bfloat16':
      return bfloat16ToFloat32(array.data as Uint16Array);
    case 'float16':
      return float16ToFloat32(array.data as Uint16Array);
    case 'float64':
      return Float32Array.from(array.data as Float64Array);
    default:
      throw new SafetensorsError(
        path,
        `tensor ${entry.name} has dtype ${entry.dtype}, not a floating-point type`,
      );
  }
}
