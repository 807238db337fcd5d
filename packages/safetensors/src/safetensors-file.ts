import { type FileHandle, open } from 'node:fs/promises';
import { endianness } from 'node:os';
import type { NamedArray } from '@badam/core';
import {
  bfloat16ToFloat32,
  FROM_SAFETENSORS,
  float16ToFloat32,
  isSafetensorsDType,
  type SafetensorsDType,
  safetensorsBytes,
} from './dtypes.js';
import { regularFileProblem } from './regular-file.js';
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

/**
 * An open safetensors file: the validated header, and tensors read on demand by positional reads (a
 * 16 GB file is never loaded whole). Every inconsistency — truncation, an absurd header length, invalid
 * JSON, an unknown dtype, offsets out of range or not matching the shape — is a {@link SafetensorsError}
 * naming the file, the tensor and the problem.
 *
 * @example
 * ```ts
 * const file = await SafetensorsFile.open('model.safetensors');
 * const embed = await file.readFloat32('model.embed_tokens.weight'); // BF16/F16 converted to fp32
 * await file.close();
 * ```
 */
export class SafetensorsFile {
  private constructor(
    readonly path: string,
    private readonly handle: FileHandle,
    /** The `__metadata__` strings. */
    readonly metadata: Readonly<Record<string, string>>,
    /** Tensors by name, in header order. */
    readonly entries: ReadonlyMap<string, SafetensorsEntry>,
  ) {}

  /** Opens and validates a safetensors file. */
  static async open(path: string): Promise<SafetensorsFile> {
    if (endianness() !== 'LE')
      throw new SafetensorsError(path, 'reading safetensors needs a little-endian machine');
    const problem = await regularFileProblem(path);
    if (problem !== undefined) throw new SafetensorsError(path, problem);
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch (error) {
      throw new SafetensorsError(
        path,
        `cannot open: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
      );
    }
    try {
      const { size } = await handle.stat();
      const { metadata, entries } = await readHeader(path, handle, size);
      return new SafetensorsFile(path, handle, metadata, entries);
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  /** Tensor names in header order. */
  names(): string[] {
    return [...this.entries.keys()];
  }

  /** The entry of `name`, or a SafetensorsError naming the missing tensor. */
  entry(name: string): SafetensorsEntry {
    const entry = this.entries.get(name);
    if (entry === undefined) {
      throw new SafetensorsError(
        this.path,
        `missing tensor ${JSON.stringify(name)} (the file has ${this.entries.size} tensors)`,
      );
    }
    return entry;
  }

  /** Reads a tensor in its stored dtype (16-bit floats as raw bits). */
  async read(name: string): Promise<NamedArray> {
    const entry = this.entry(name);
    const bytes = new Uint8Array(entry.end - entry.begin);
    let done = 0;
    while (done < bytes.length) {
      const { bytesRead } = await this.handle.read(bytes, done, bytes.length - done, entry.begin + done);
      if (bytesRead === 0)
        throw new SafetensorsError(this.path, `tensor ${name} ends past the end of the file`);
      done += bytesRead;
    }
    const dtype = FROM_SAFETENSORS[entry.dtype];
    const buffer = bytes.buffer;
    const data =
      dtype === 'float64'
        ? new Float64Array(buffer)
        : dtype === 'float32'
          ? new Float32Array(buffer)
          : dtype === 'float16' || dtype === 'bfloat16'
            ? new Uint16Array(buffer)
            : dtype === 'int64'
              ? new BigInt64Array(buffer)
              : dtype === 'int32'
                ? new Int32Array(buffer)
                : dtype === 'int16'
                  ? new Int16Array(buffer)
                  : dtype === 'int8'
                    ? new Int8Array(buffer)
                    : bytes;
    return { name, dtype, shape: entry.shape, data };
  }

  /** Reads a floating-point tensor as fp32 (F16 and BF16 widened exactly, F64 rounded). */
  async readFloat32(name: string): Promise<Float32Array> {
    const array = await this.read(name);
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
          this.path,
          `tensor ${name} has dtype ${this.entry(name).dtype}, not a floating-point type`,
        );
    }
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

async function readExactly(
  path: string,
  handle: FileHandle,
  length: number,
  position: number,
): Promise<Uint8Array> {
  const bytes = new Uint8Array(length);
  const { bytesRead } = await handle.read(bytes, 0, length, position);
  if (bytesRead !== length)
    throw new SafetensorsError(path, `truncated: expected ${length} bytes at offset ${position}`);
  return bytes;
}

async function readHeader(
  path: string,
  handle: FileHandle,
  size: number,
): Promise<{ metadata: Record<string, string>; entries: Map<string, SafetensorsEntry> }> {
  if (size < 8) {
    throw new SafetensorsError(
      path,
      `truncated: ${size} bytes, but a safetensors file starts with an 8-byte header length`,
    );
  }
  const lengthBytes = await readExactly(path, handle, 8, 0);
  const headerLength = Number(new DataView(lengthBytes.buffer).getBigUint64(0, true));
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
  const headerText = Buffer.from(await readExactly(path, handle, headerLength, 8)).toString('utf8');
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
