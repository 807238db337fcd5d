import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { BadamOptionError, type LlamaConfig, llamaConfigToHf, type NamedArray } from '@badam/core';
import { INDEX_FILE, SINGLE_FILE, writeFileAtomic, writeSafetensors } from '@badam/safetensors';
import type { DeviceTensor } from '../device-tensor.js';
import type { DeviceLlamaDType } from './llama-net.js';

/**
 * Writes `weights` (in model order) in Hugging Face's format, in `dtype` (16-bit bits as they are):
 * config.json (with `torch_dtype`) and model.safetensors, or `model-0000x-of-0000y.safetensors` shards and
 * model.safetensors.index.json past `maxShardBytes` (default 5 GiB, as Hugging Face). Every file is written
 * atomically, the index last; weights are read from the device one shard at a time.
 */
export async function saveLlamaWeights(
  directory: string,
  config: LlamaConfig,
  dtype: DeviceLlamaDType,
  weights: ReadonlyMap<string, DeviceTensor>,
  options: { maxShardBytes?: number },
): Promise<void> {
  const maxShardBytes = options.maxShardBytes ?? 5 * 1024 ** 3;
  if (!(maxShardBytes > 0)) throw new BadamOptionError('maxShardBytes', maxShardBytes, 'a positive number');
  // The same packing as @badam/safetensors' writeSafetensorsModel: in model order, a new shard when full.
  const shards: Array<Array<[string, DeviceTensor]>> = [[]];
  let current = 0;
  for (const entry of weights) {
    const bytes = entry[1].bytes;
    if (current > 0 && current + bytes > maxShardBytes) {
      shards.push([]);
      current = 0;
    }
    shards[shards.length - 1]!.push(entry);
    current += bytes;
  }
  const fileNames =
    shards.length === 1
      ? [SINGLE_FILE]
      : shards.map((_, i) => `model-${pad5(i + 1)}-of-${pad5(shards.length)}.safetensors`);
  await mkdir(directory, { recursive: true });
  const weightMap: Record<string, string> = {};
  for (const [i, shard] of shards.entries()) {
    const tensors: NamedArray[] = shard.map(([name, w]) => ({
      name,
      dtype,
      shape: [...w.shape],
      data: w.readRaw() as Float32Array | Uint16Array,
    }));
    await writeSafetensors(join(directory, fileNames[i]!), tensors, { format: 'pt' });
    for (const [name] of shard) weightMap[name] = fileNames[i]!;
  }
  if (shards.length > 1) {
    const totalSize = [...weights.values()].reduce((sum, w) => sum + w.bytes, 0);
    await writeFileAtomic(join(directory, INDEX_FILE), [
      `${JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2)}\n`,
    ]);
  }
  const hf = { ...llamaConfigToHf(config), torch_dtype: dtype };
  await writeFileAtomic(join(directory, 'config.json'), [`${JSON.stringify(hf, null, 2)}\n`]);
}

function pad5(i: number): string {
  return String(i).padStart(5, '0');
}
