import type { RunIO } from '@badam/callbacks';
import { UsageError } from '@badam/core';
import type { CudaTrainingModel, Device, DeviceLlama, DeviceTensor } from '@badam/cuda';
import { ByteTokenizer, HfTokenizer, type PaddedBatch, type Tokenizer } from '@badam/data';
import { BUILTIN_INITIALIZER_RANGE, builtinLlamaConfig } from '@badam/embedded';
import { type LlamaConfig, readLlamaConfig } from '@badam/models';
import type { RunnerModel } from '@badam/runner';
import { deviceCausalLmTask } from './device-training-task.js';
import { scratchModelSource } from './from-scratch.js';
import type { TrainOptions } from './train-options.js';

/** A Llama on @badam/cuda's device, with what the run needs beside it. */
export interface DeviceRunModel {
  readonly model: DeviceLlama;
  readonly device: Device;
  readonly config: LlamaConfig;
  readonly tokenizer: Tokenizer;
  readonly builtin: boolean;
  /** The folder whose tokenizer files and chat template the run reads, if any. */
  readonly tokenizerDir: string | undefined;
}

/**
 * The weights' dtype on the device: bf16 with `--bf16`, fp16 with `--fp16` (LLaMA-Factory's flags), else
 * fp32 (tfjs's numbers).
 */
export function deviceDtype(
  options: Pick<TrainOptions, 'bf16'> & { readonly fp16?: boolean },
): 'bfloat16' | 'float16' | 'float32' {
  return options.bf16 ? 'bfloat16' : options.fp16 ? 'float16' : 'float32';
}

/**
 * Builds the run's Llama on its device (`--backend cpu`: the CPU engine; `--backend cuda`: `--cuda_device`), never as a tfjs model (an 8B model does not fit in
 * host fp32): from `--model_name_or_path` (Hugging Face folder, single or sharded safetensors), or the
 * built-in tiny Llama initialised as on tfjs from `--seed` (or, with `builtinStart`, its weights from that folder,
 * e.g. the shipped pretrained start), or with `--train_from_scratch` random weights drawn on the device from
 * the config.json of `--model_name_or_path` (see from-scratch.ts). `beforeWeights` runs once the config is known
 * and before any weight is read (flags the model decides on fail before a long load).
 */
export async function loadDeviceLlama(
  options: TrainOptions,
  io: Pick<RunIO, 'warn'>,
  beforeWeights: (config: LlamaConfig) => void = () => {},
  builtinStart?: { readonly directory: string },
): Promise<DeviceRunModel> {
  const { DeviceLlama, openDevice } = await import('@badam/cuda');
  const device = openDevice(options.cudaDevice);
  // RoPE tables as long as the longest batch can be: --cutoff_len (checked first) rounded up to the padding.
  const modelOptions = (config: LlamaConfig) => ({
    dtype: deviceDtype(options),
    gradientCheckpointing: options.gradientCheckpointing,
    maxPositions: Math.min(config.maxPositionEmbeddings, Math.ceil(options.cutoffLen / 8) * 8),
  });
  if (builtinStart !== undefined) {
    // The built-in tiny Llama's shipped weights (a Hugging Face folder without tokenizer files: it reads bytes).
    const config = await readLlamaConfig(builtinStart.directory);
    beforeWeights(config);
    const model = await DeviceLlama.fromPretrained(device, builtinStart.directory, modelOptions(config));
    return { model, device, config, tokenizer: new ByteTokenizer(), builtin: true, tokenizerDir: undefined };
  }
  if (options.trainFromScratch && options.modelNameOrPath !== undefined) {
    // Hugging Face's initialisation drawn on the device: seconds where JavaScript's draws take minutes.
    const source = await scratchModelSource(options.modelNameOrPath, options.seed);
    beforeWeights(source.config);
    io.warn(`badam-llama: ${source.note}`);
    const model = DeviceLlama.createRandom(device, source.config, {
      ...modelOptions(source.config),
      seed: options.seed,
      initializerRange: source.initializerRange,
    });
    const { config, tokenizer } = source;
    return { model, device, config, tokenizer, builtin: false, tokenizerDir: source.sourceDir };
  }
  if (options.modelNameOrPath === undefined) {
    const config = builtinLlamaConfig();
    beforeWeights(config);
    const model = DeviceLlama.create(device, config, {
      ...modelOptions(config),
      seed: options.seed,
      initializerRange: BUILTIN_INITIALIZER_RANGE,
    });
    return { model, device, config, tokenizer: new ByteTokenizer(), builtin: true, tokenizerDir: undefined };
  }
  const config = await readLlamaConfig(options.modelNameOrPath);
  beforeWeights(config);
  const tokenizer = await HfTokenizer.fromDirectory(options.modelNameOrPath);
  const model = await DeviceLlama.fromPretrained(device, options.modelNameOrPath, modelOptions(config));
  return { model, device, config, tokenizer, builtin: false, tokenizerDir: options.modelNameOrPath };
}

/**
 * The device Llama as the runner kit trains it: BAdam's partition choices, and @badam/cuda's trainer backend
 * factory bound to the model (its device tensors and the causal-LM task).
 */
export function deviceLlamaRunnerModel(
  loaded: Pick<DeviceRunModel, 'model' | 'device'>,
  options: TrainOptions,
): RunnerModel<PaddedBatch> {
  const { model, device } = loaded;
  const onDevice: CudaTrainingModel<PaddedBatch> = {
    device,
    parameters: () =>
      model.parameters().map((p) => {
        if (p.values instanceof Float32Array)
          throw new Error(`DeviceLlama.parameters(): ${p.name} is not on the device`);
        return { ...p, values: p.values as DeviceTensor };
      }),
    task: (gradientOf) => deviceCausalLmTask(model, gradientOf),
  };
  return {
    kind: 'Llama',
    partition: { includeEmbedding: options.includeEmbedding, includeLmHead: options.includeLmHead },
    addLora: () => {
      throw new UsageError(
        `--finetuning_type lora does not run on --backend ${options.backend} yet: use block or full there, or --backend tfjs`,
      );
    },
    parameters: () =>
      onDevice.parameters().map((p) => ({ name: p.name, shape: [...p.shape], dtype: p.dtype })),
    // @badam/cuda is imported when used, so that a machine without its addon still trains on tfjs.
    createTrainerBackend: async (plan) =>
      (await import('@badam/cuda')).createCudaTrainerBackend(plan, onDevice),
  };
}
