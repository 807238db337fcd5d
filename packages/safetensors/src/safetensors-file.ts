import { type FileHandle, open } from 'node:fs/promises';
import { endianness } from 'node:os';
import type { NamedArray } from '@badam/core';
import { regularFileProblem } from './regular-file.js';
import { SafetensorsError } from './safetensors-error.js';
import {
  headerLengthOf,
  parseSafetensorsHeader,
  type SafetensorsEntry,
  tensorAsFloat32,
  tensorFromBytes,
} from './safetensors-header.js';

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
      const headerLength = headerLengthOf(path, await readExactly(path, handle, Math.min(8, size), 0), size);
      const { metadata, entries } = parseSafetensorsHeader(
        path,
        await readExactly(path, handle, headerLength, 8),
        size,
      );
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
    return tensorFromBytes(entry, bytes);
  }

  /** Reads a floating-point tensor as fp32 (F16 and BF16 widened exactly, F64 rounded). */
  async readFloat32(name: string): Promise<Float32Array> {
    return tensorAsFloat32(this.path, this.entry(name), await this.read(name));
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
