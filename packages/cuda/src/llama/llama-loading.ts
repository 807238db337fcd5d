import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  BadamOptionError,
  isFiniteArray,
  type LlamaConfig,
  llamaConfigFromHf,
  type NamedArray,
} from '@badam/core';
import { regularFileProblem, SafetensorsModel } from '@badam/safetensors';
import type { Device } from '../device.js';
import type { DeviceTensor } from '../device-tensor.js';
import type { DeviceLlamaDType } from './llama-net.js';
import {
  forEachInitialLlamaParameter,
  type LlamaParameterSpec,
  llamaParameterSpecs,
} from './llama-parameters.js';

/** What the loaders check of a DeviceLlama's options (the rest is checked where it is used). */
export interface LlamaLoadOptions {
  dtype?: DeviceLlamaDType;
  maxPositions?: number;
  lossChunkTokens?: number;
}

/** A stored parameter: fp32 values, or 16-bit bits with their dtype. */
type StoredValues = { data: Float32Array | Uint16Array; dtype: 'float32' | 'bfloat16' | 'float16' };

/** The groups of consecutive parameters a layer stores in one allocation, and the offset of each member. */
const FUSED_GROUPS: ReadonlyArray<readonly string[]> = [
  ['self_attn.q_proj.weight', 'self_attn.k_proj.weight', 'self_attn.v_proj.weight'],
  ['self_attn.q_proj.bias', 'self_attn.k_proj.bias', 'self_attn.v_proj.bias'],
  ['mlp.gate_proj.weight', 'mlp.up_proj.weight'],
  ['mlp.gate_proj.bias', 'mlp.up_proj.bias'],
];

/**
 * The parameter names of the fused group that `name` opens (a layer's q_proj of q / k / v, gate_proj of gate /
 * up, weights or biases), in storage order; undefined when `name` opens none. The step reads each group
 * through one view from its first member, so whoever allocates a model's weights (or gathers a sharded
 * model's) keeps a group's members consecutive in one allocation.
 */
export function fusedGroupOpenedBy(name: string): string[] | undefined {
  const layer = /^(model\.layers\.\d+\.)(.*)$/.exec(name);
  const group = layer ? FUSED_GROUPS.find((g) => g[0] === layer[2]) : undefined;
  return layer && group ? group.map((suffix) => `${layer[1]}${suffix}`) : undefined;
}

/**
 * The model's weight tensors, filled parameter by parameter in model order. A layer's q, k and v weights
 * (and biases), and its gate and up weights (and biases), are views of one allocation each, so the step
 * runs one GEMM per group (LlamaNet); every other parameter has its own. The views are all that refers to a
 * group's memory: it is returned when the last of them is freed. {@link abort} frees what was made when a
 * loader fails half way.
 */
class WeightUpload {
  readonly weights = new Map<string, DeviceTensor>();
  private readonly specs: Map<string, LlamaParameterSpec>;

  constructor(
    private readonly device: Device,
    private readonly dtype: DeviceLlamaDType,
    config: LlamaConfig,
  ) {
    this.specs = new Map(llamaParameterSpecs(config).map((spec) => [spec.name, spec]));
  }

  /** The tensor `spec` is stored in (a view of its group's allocation for a fused member), made on first use. */
  tensorOf(spec: LlamaParameterSpec): DeviceTensor {
    return this.weights.get(spec.name) ?? this.allocate(spec);
  }

  put(spec: LlamaParameterSpec, stored: StoredValues): void {
    const target = this.tensorOf(spec);
    if (stored.dtype === this.dtype || stored.dtype === 'float32') {
      target.write(stored.data);
      return;
    }
    // Another 16-bit type: its bits as they are, cast on the device.
    const staged = this.device.tensor(stored.data, spec.shape, stored.dtype, 'workspace');
    try {
      this.device.cast(staged, target);
    } finally {
      staged.free();
    }
  }

  /** The weights in model order (Hugging Face's named_parameters()). */
  ordered(): Map<string, DeviceTensor> {
    return new Map([...this.specs.keys()].map((name) => [name, this.weights.get(name)!]));
  }

  abort(): void {
    for (const t of this.weights.values()) t.free();
    this.weights.clear();
  }

  /** The tensor of `spec`: its own, or (a fused group's first member) one allocation viewed by every member. */
  private allocate(spec: LlamaParameterSpec): DeviceTensor {
    const group = fusedGroupOpenedBy(spec.name);
    if (group === undefined) {
      const t = this.device.empty(spec.shape, this.dtype, 'weights');
      this.weights.set(spec.name, t);
      return t;
    }
    const members = group.map((name) => this.specs.get(name)!);
    const sizes = members.map((m) => m.shape.reduce((a, b) => a * b, 1));
    const whole = this.device.empty([sizes.reduce((a, b) => a + b, 0)], this.dtype, 'weights');
    try {
      let offset = 0;
      members.forEach((m, i) => {
        this.weights.set(m.name, whole.view(offset, m.shape));
        offset += sizes[i]!;
      });
    } finally {
      whole.free(); // the views hold the memory now
    }
    return this.weights.get(spec.name)!;
  }
}

/** Checks what the config and options must satisfy; returns the dtype. */
export function checkLlamaOptions(config: LlamaConfig, options: LlamaLoadOptions): DeviceLlamaDType {
  const dtype = options.dtype ?? 'bfloat16';
  if (dtype !== 'bfloat16' && dtype !== 'float16' && dtype !== 'float32')
    throw new BadamOptionError('dtype', dtype, "'bfloat16', 'float16' or 'float32'");
  if (config.headDim % 2 !== 0)
    throw new BadamOptionError('config headDim', config.headDim, 'an even number (RoPE rotates pairs)');
  if (config.numHeads % config.numKeyValueHeads !== 0)
    throw new BadamOptionError(
      'config num_key_value_heads',
      config.numKeyValueHeads,
      `a divisor of num_attention_heads (${config.numHeads})`,
    );
  const { maxPositions, lossChunkTokens } = options;
  if (maxPositions !== undefined && (!Number.isSafeInteger(maxPositions) || maxPositions < 1))
    throw new BadamOptionError('maxPositions', maxPositions, 'an integer >= 1');
  if (lossChunkTokens !== undefined && (!Number.isSafeInteger(lossChunkTokens) || lossChunkTokens < 1))
    throw new BadamOptionError('lossChunkTokens', lossChunkTokens, 'an integer >= 1');
  return dtype;
}

/** @badam/models' random initialisation of `config`, rounded to `dtype`; one parameter on the host at a time. */
export function initialLlamaWeights(
  device: Device,
  config: LlamaConfig,
  dtype: DeviceLlamaDType,
  options: { seed?: number; initializerRange?: number },
): Map<string, DeviceTensor> {
  const upload = new WeightUpload(device, dtype, config);
  try {
    forEachInitialLlamaParameter(config, options, (spec, values) =>
      upload.put(spec, { data: values, dtype: 'float32' }),
    );
    return upload.ordered();
  } catch (error) {
    upload.abort();
    throw error;
  }
}

/**
 * Hugging Face's initialisation drawn on the device: matrices normal(0, std) (parameter k: stream
 * `seed * 2^16 + k`), biases 0, norms 1, in the fused layout the loaders make. Nothing is drawn on the host.
 */
export function randomLlamaWeights(
  device: Device,
  config: LlamaConfig,
  dtype: DeviceLlamaDType,
  seed: number,
  std: number,
): Map<string, DeviceTensor> {
  const upload = new WeightUpload(device, dtype, config);
  try {
    for (const [k, spec] of llamaParameterSpecs(config).entries()) {
      const t = upload.tensorOf(spec);
      if (spec.init === 'normal') t.fillNormal(0, std, seed * 2 ** 16 + k);
      else t.fill(spec.init === 'ones' ? 1 : 0);
    }
    return upload.ordered();
  } catch (error) {
    upload.abort();
    throw error;
  }
}

/** Every parameter of `config` from `arrays` (extra names ignored), converted to `dtype` on the device. */
export function llamaWeightsFromArrays(
  device: Device,
  config: LlamaConfig,
  dtype: DeviceLlamaDType,
  arrays: readonly NamedArray[],
): Map<string, DeviceTensor> {
  const byName = new Map(arrays.map((a) => [a.name, a]));
  const upload = new WeightUpload(device, dtype, config);
  try {
    for (const spec of llamaParameterSpecs(config)) {
      const array = byName.get(spec.name);
      if (array === undefined)
        throw new BadamOptionError(
          'arrays',
          `no ${JSON.stringify(spec.name)}`,
          `every parameter of the config (missing ${spec.name} [${spec.shape.join(', ')}])`,
        );
      checkShape(spec.name, array.shape, spec.shape, 'arrays');
      if (array.dtype !== 'float32' && array.dtype !== 'bfloat16' && array.dtype !== 'float16')
        throw new BadamOptionError(`arrays ${spec.name} dtype`, array.dtype, 'float32, bfloat16 or float16');
      upload.put(spec, { data: array.data as Float32Array | Uint16Array, dtype: array.dtype });
    }
    return upload.ordered();
  } catch (error) {
    upload.abort();
    throw error;
  }
}

/**
 * The config and weights of a local Hugging Face directory (config.json, single or sharded safetensors),
 * each tensor's stored bytes sent to the device as they are and cast there when the stored dtype differs.
 */
export async function llamaWeightsFromDirectory(
  device: Device,
  directory: string,
  options: LlamaLoadOptions,
): Promise<{ config: LlamaConfig; dtype: DeviceLlamaDType; weights: Map<string, DeviceTensor> }> {
  const configPath = join(directory, 'config.json');
  let json: unknown;
  try {
    const problem = await regularFileProblem(configPath);
    if (problem !== undefined) throw new Error(problem);
    json = JSON.parse((await readFile(configPath, 'utf8')).replace(/^\uFEFF/, ''));
  } catch (error) {
    throw new BadamOptionError(
      'model directory',
      directory,
      'a Hugging Face model folder with a readable config.json',
      `${configPath}: ${(error as Error).message}`,
    );
  }
  const config = llamaConfigFromHf(json, configPath);
  const dtype = checkLlamaOptions(config, options);
  const file = await SafetensorsModel.open(directory);
  const upload = new WeightUpload(device, dtype, config);
  try {
    for (const spec of llamaParameterSpecs(config)) {
      if (!file.has(spec.name))
        throw new BadamOptionError(
          `${directory} weights`,
          `no tensor ${JSON.stringify(spec.name)}`,
          `every tensor config.json's architecture needs (${spec.name} [${spec.shape.join(', ')}])`,
        );
      checkShape(spec.name, file.shapeOf(spec.name), spec.shape, directory);
      const stored = await file.read(spec.name);
      if (stored.dtype !== 'float32' && stored.dtype !== 'bfloat16' && stored.dtype !== 'float16')
        throw new BadamOptionError(`${directory} ${spec.name} dtype`, stored.dtype, 'F32, BF16 or F16');
      // One NaN trained on makes every checkpoint of the run unsavable: refuse it here, by name.
      if (!isFiniteArray(stored))
        throw new BadamOptionError(
          `${directory} ${spec.name}`,
          'NaN or infinity',
          'finite weights',
          'the weights are damaged or were saved from a diverged run; use a good copy of the model',
        );
      upload.put(spec, { data: stored.data as Float32Array | Uint16Array, dtype: stored.dtype });
    }
    return { config, dtype, weights: upload.ordered() };
  } catch (error) {
    upload.abort();
    throw error;
  } finally {
    await file.close();
  }
}

function checkShape(
  name: string,
  actual: readonly number[],
  expected: readonly number[],
  where: string,
): void {
  if (actual.join() !== expected.join())
    throw new BadamOptionError(
      `${where} ${name} shape`,
      `[${actual.join(', ')}]`,
      `[${expected.join(', ')}] (what config.json's architecture implies)`,
    );
}
