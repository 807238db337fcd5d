import type { NamedArray } from '@badam/core';
import { SafetensorsError } from './safetensors-error.js';
import {
  headerLengthOf,
  parseSafetensorsHeader,
  type SafetensorsEntry,
  tensorAsFloat32,
  tensorFromBytes,
} from './safetensors-header.js';

/**
 * A safetensors file already in memory (fetched by a web page, or read whole): the same validation as
 * {@link SafetensorsFile} and the same reads, without Node's file system, so it runs in a browser.
 *
 * @example
 * ```ts
 * const response = await fetch('/assets/embedded-pretrained/model.safetensors');
 * const weights = SafetensorsBytes.parse(new Uint8Array(await response.arrayBuffer()), response.url);
 * const embed = await weights.readFloat32('model.embed_tokens.weight');
 * ```
 */
export class SafetensorsBytes {
  private constructor(
    /** What the bytes are called in messages (a URL or a path). */
    readonly path: string,
    private readonly bytes: Uint8Array,
    /** The `__metadata__` strings. */
    readonly metadata: Readonly<Record<string, string>>,
    /** Tensors by name, in header order. */
    readonly entries: ReadonlyMap<string, SafetensorsEntry>,
  ) {}

  /** Validates a whole safetensors file held in `bytes`; `label` names it in errors. */
  static parse(bytes: Uint8Array, label: string): SafetensorsBytes {
    const headerLength = headerLengthOf(label, bytes.subarray(0, 8), bytes.length);
    const { metadata, entries } = parseSafetensorsHeader(
      label,
      bytes.subarray(8, 8 + headerLength),
      bytes.length,
    );
    return new SafetensorsBytes(label, bytes, metadata, entries);
  }

  /** Tensor names in header order. */
  names(): string[] {
    return [...this.entries.keys()];
  }

  has(name: string): boolean {
    return this.entries.has(name);
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

  shapeOf(name: string): readonly number[] {
    return this.entry(name).shape;
  }

  /** A tensor in its stored dtype (16-bit floats as raw bits). */
  async read(name: string): Promise<NamedArray> {
    const entry = this.entry(name);
    return tensorFromBytes(entry, this.bytes.subarray(entry.begin, entry.end));
  }

  /** A floating-point tensor as fp32 (F16 and BF16 widened exactly, F64 rounded). */
  async readFloat32(name: string): Promise<Float32Array> {
    return tensorAsFloat32(this.path, this.entry(name), await this.read(name));
  }

  /** Nothing to release: the bytes belong to the caller. Here so it reads like the file and the model. */
  async close(): Promise<void> {}
}
