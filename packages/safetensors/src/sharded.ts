import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ARRAY_DTYPE_BYTES, type NamedArray } from '@badam/core';
import { writeFileAtomic } from './atomic-file.js';
import { regularFileProblem } from './regular-file.js';
import { SafetensorsError } from './safetensors-error.js';
import { SafetensorsFile } from './safetensors-file.js';
import { writeSafetensors } from './write-safetensors.js';

/** The file names Hugging Face uses for model weights. */
export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';

/**
 * A model's weights in a Hugging Face directory, single-file (`model.safetensors`) or sharded
 * (`model-0000x-of-0000y.safetensors` with `model.safetensors.index.json`), read tensor by tensor.
 *
 * @example
 * ```ts
 * const weights = await SafetensorsModel.open('./TinyLlama-1.1B');
 * for (const name of weights.names()) use(name, await weights.readFloat32(name));
 * await weights.close();
 * ```
 */
export class SafetensorsModel {
  private constructor(
    readonly directory: string,
    private readonly files: readonly SafetensorsFile[],
    private readonly byName: ReadonlyMap<string, SafetensorsFile>,
  ) {}

  static async open(directory: string): Promise<SafetensorsModel> {
    const indexPath = join(directory, INDEX_FILE);
    const singlePath = join(directory, SINGLE_FILE);
    if (await exists(indexPath)) {
      const problem = await regularFileProblem(indexPath);
      if (problem !== undefined) throw new SafetensorsError(indexPath, problem);
      let index: unknown;
      try {
        index = JSON.parse((await readFile(indexPath, 'utf8')).replace(/^\uFEFF/, ''));
      } catch (error) {
        throw new SafetensorsError(indexPath, `not valid JSON (${(error as Error).message})`);
      }
      const weightMap = (index as { weight_map?: unknown })?.weight_map;
      if (
        typeof weightMap !== 'object' ||
        weightMap === null ||
        !Object.values(weightMap).every((f) => typeof f === 'string')
      ) {
        throw new SafetensorsError(indexPath, 'has no weight_map of tensor name -> shard file');
      }
      const shardNames = [...new Set(Object.values(weightMap as Record<string, string>))];
      const files = new Map<string, SafetensorsFile>();
      try {
        for (const shard of shardNames) files.set(shard, await SafetensorsFile.open(join(directory, shard)));
      } catch (error) {
        for (const f of files.values()) await f.close();
        throw error;
      }
      const byName = new Map<string, SafetensorsFile>();
      for (const [name, shard] of Object.entries(weightMap as Record<string, string>)) {
        const file = files.get(shard)!;
        if (!file.entries.has(name)) {
          for (const f of files.values()) await f.close();
          throw new SafetensorsError(
            file.path,
            `missing tensor ${JSON.stringify(name)}, which ${INDEX_FILE} places in this shard`,
          );
        }
        byName.set(name, file);
      }
      return new SafetensorsModel(directory, [...files.values()], byName);
    }
    if (await exists(singlePath)) {
      const file = await SafetensorsFile.open(singlePath);
      return new SafetensorsModel(directory, [file], new Map(file.names().map((n) => [n, file])));
    }
    throw new SafetensorsError(directory, `has neither ${SINGLE_FILE} nor ${INDEX_FILE}`);
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  private fileOf(name: string): SafetensorsFile {
    const file = this.byName.get(name);
    if (file === undefined)
      throw new SafetensorsError(this.directory, `missing tensor ${JSON.stringify(name)}`);
    return file;
  }

  shapeOf(name: string): readonly number[] {
    return this.fileOf(name).entry(name).shape;
  }

  read(name: string): Promise<NamedArray> {
    return this.fileOf(name).read(name);
  }

  readFloat32(name: string): Promise<Float32Array> {
    return this.fileOf(name).readFloat32(name);
  }

  async close(): Promise<void> {
    for (const f of this.files) await f.close();
  }
}

/**
 * Writes a model's weights in Hugging Face's layout: one `model.safetensors` when they fit in
 * `maxShardBytes`, else `model-0000x-of-0000y.safetensors` shards and `model.safetensors.index.json`.
 * Every file is written atomically; the index last, so a reader never sees an index without its shards.
 */
export async function writeSafetensorsModel(
  directory: string,
  tensors: readonly NamedArray[],
  options: { maxShardBytes?: number; metadata?: Record<string, string> } = {},
): Promise<string[]> {
  const { maxShardBytes = 5 * 1024 ** 3, metadata = { format: 'pt' } } = options;
  const sizeOf = (t: NamedArray) => t.data.length * ARRAY_DTYPE_BYTES[t.dtype];
  const shards: NamedArray[][] = [[]];
  let current = 0;
  for (const t of tensors) {
    if (current > 0 && current + sizeOf(t) > maxShardBytes) {
      shards.push([]);
      current = 0;
    }
    shards[shards.length - 1]!.push(t);
    current += sizeOf(t);
  }
  if (shards.length === 1) {
    await writeSafetensors(join(directory, SINGLE_FILE), tensors, metadata);
    return [SINGLE_FILE];
  }
  const names = shards.map(
    (_, i) =>
      `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`,
  );
  const weightMap: Record<string, string> = {};
  for (const [i, shard] of shards.entries()) {
    await writeSafetensors(join(directory, names[i]!), shard, metadata);
    for (const t of shard) weightMap[t.name] = names[i]!;
  }
  const totalSize = tensors.reduce((s, t) => s + sizeOf(t), 0);
  await writeFileAtomic(join(directory, INDEX_FILE), [
    `${JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2)}\n`,
  ]);
  return [...names, INDEX_FILE];
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
