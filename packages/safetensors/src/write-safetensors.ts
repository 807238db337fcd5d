import { ARRAY_DTYPE_BYTES, BadamOptionError, type NamedArray } from '@badam/core';
import { writeFileAtomic } from './atomic-file.js';
import { TO_SAFETENSORS } from './dtypes.js';

/**
 * The bytes of a safetensors header for `tensors` (laid out in the given order) and `metadata`: the 8-byte
 * little-endian length, then the JSON padded with spaces to a multiple of 8, as the reference writer does.
 */
export function safetensorsHeader(
  tensors: readonly NamedArray[],
  metadata: Readonly<Record<string, string>> = {},
): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  const names = new Set<string>();
  for (const t of tensors) {
    if (names.has(t.name)) throw new BadamOptionError('tensors', t.name, 'unique tensor names');
    names.add(t.name);
    const dtype = TO_SAFETENSORS[t.dtype];
    if (dtype === undefined)
      throw new BadamOptionError(`dtype of ${t.name}`, t.dtype, 'a dtype safetensors can store');
    const elements = t.shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== elements) {
      throw new BadamOptionError(
        `data of ${t.name}`,
        `${t.data.length} elements`,
        `${elements} elements for shape [${t.shape.join(', ')}]`,
      );
    }
    const bytes = elements * ARRAY_DTYPE_BYTES[t.dtype];
    header[t.name] = { dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const text = Buffer.from(json, 'utf8');
  const out = new Uint8Array(8 + text.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(text.length), true);
  out.set(text, 8);
  return out;
}

/**
 * Writes `tensors` to a safetensors file, atomically (temp + fsync + rename) and streamed tensor by tensor.
 * Any safetensors reader accepts the result (the Python `safetensors` package, Hugging Face, this package).
 *
 * @example
 * ```ts
 * await writeSafetensors('out/model.safetensors', [
 *   { name: 'w', dtype: 'float32', shape: [2, 2], data: Float32Array.of(1, 2, 3, 4) },
 * ], { format: 'pt' });
 * ```
 */
export async function writeSafetensors(
  path: string,
  tensors: readonly NamedArray[],
  metadata: Readonly<Record<string, string>> = {},
): Promise<void> {
  const header = safetensorsHeader(tensors, metadata);
  await writeFileAtomic(path, chunks(header, tensors));
}

function* chunks(header: Uint8Array, tensors: readonly NamedArray[]): Generator<Uint8Array> {
  yield header;
  for (const t of tensors) yield new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}
