/**
 * The self-check every GPU run makes before it times anything: one BAdam step of small Llamas on the device
 * under test and on the CPU device (the C++ references), from the same weights and batch, compared loss by
 * loss and gradient by gradient. The models cover what the 8B and TinyLlama steps run: grouped-query
 * attention at head dims 64 and 128 (the tensor-core kernels on a GPU), padded rows and ignored labels,
 * partial 64-row tiles, q / k / v biases, the fused projections, checkpointing, bf16 throughout. Run by
 * bench/llama-train.ts (and so by bench/gpu-run.sh), which stops when it fails.
 */
import { BlockOptimizer, type LlamaConfig, llamaConfigFromHf, type NamedArray } from '@badam/core';
import { CudaBlockBackend } from '../cuda-block-backend.js';
import type { Device } from '../device.js';
import { DeviceLlama, type DeviceLlamaBatch } from '../llama/device-llama.js';
import { forEachInitialLlamaParameter } from '../llama/llama-parameters.js';

/** One gradient's (or the loss's) agreement: relative error of the norm of the difference. */
export interface SelfCheckMismatch {
  readonly name: string;
  /** |a - b| / |b| over the whole tensor (b: the CPU device's). */
  readonly relError: number;
}

/** One model's comparison. */
export interface SelfCheckCase {
  readonly name: string;
  readonly loss: { readonly device: number; readonly cpu: number; readonly relError: number };
  /** The active block's gradients, worst first. */
  readonly gradients: readonly SelfCheckMismatch[];
  readonly passed: boolean;
}

/** What {@link llamaSelfCheck} returns; `passed` when every case is within `tolerance`. */
export interface SelfCheckResult {
  readonly passed: boolean;
  readonly device: string;
  /** bf16: the loss within tolerance.loss, every gradient within tolerance.gradient (relative, of the norm). */
  readonly tolerance: { readonly loss: number; readonly gradient: number };
  readonly cases: readonly SelfCheckCase[];
}

/** Options of {@link llamaSelfCheck}. */
export interface SelfCheckOptions {
  /**
   * Test hook: scale this parameter's gradient on the device under test by 1.5 before comparing, to show
   * the check fails when a kernel is wrong (bench/llama-train.ts reads it from BADAM_SELF_CHECK_PLANT).
   */
  plant?: string;
}

/** bf16 activations and 16-bit gradient buffers: two summation orders and the tensor cores' rounding of P. */
const TOLERANCE = { loss: 1e-2, gradient: 3e-2 };

const CASES: Array<{ name: string; config: Record<string, unknown>; lengths: [number, number] }> = [
  {
    name: 'GQA 4 / 2, head dim 64, batch 2 x 70 padded to [70, 45], untied',
    config: {
      vocab_size: 509,
      hidden_size: 256,
      intermediate_size: 704,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      tie_word_embeddings: false,
    },
    lengths: [70, 45],
  },
  {
    name: 'GQA 4 / 1, head dim 128, q/k/v biases, batch 2 x 70 padded to [52, 70], tied',
    config: {
      vocab_size: 509,
      hidden_size: 512,
      intermediate_size: 896,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 1,
      tie_word_embeddings: true,
      attention_bias: true,
    },
    lengths: [52, 70],
  },
];

/** The same random weights for both devices (@badam/models' initialisation), as fp32 arrays. */
function initialArrays(config: LlamaConfig): NamedArray[] {
  const arrays: NamedArray[] = [];
  forEachInitialLlamaParameter(config, { seed: 3 }, (spec, values) =>
    arrays.push({ name: spec.name, dtype: 'float32', shape: [...spec.shape], data: values }),
  );
  return arrays;
}

/** A batch of right-padded rows: labels = ids, padding and one position per row ignored (-100). */
function batchOf(config: LlamaConfig, lengths: readonly number[]): DeviceLlamaBatch {
  const seqLen = Math.max(...lengths);
  const inputIds = new Int32Array(lengths.length * seqLen);
  const labels = new Int32Array(inputIds.length).fill(-100);
  lengths.forEach((length, r) => {
    for (let s = 0; s < length; s++) {
      inputIds[r * seqLen + s] = (r * 131 + s * 17 + 5) % config.vocabSize;
      if (s !== 3) labels[r * seqLen + s] = inputIds[r * seqLen + s]!;
    }
  });
  return { batchSize: lengths.length, seqLen, inputIds, labels, lengths: Int32Array.from(lengths) };
}

/** |a - b| / |b|, as norms over the tensors. */
function relativeError(a: Float32Array, b: Float32Array): number {
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < b.length; i++) {
    diff += (a[i]! - b[i]!) ** 2;
    norm += b[i]! ** 2;
  }
  return norm > 0 ? Math.sqrt(diff / norm) : Math.sqrt(diff);
}

/** One BAdam step (the bottom layer's block, so backward runs through every layer) on `device`. */
function stepOn(
  device: Device,
  config: LlamaConfig,
  arrays: readonly NamedArray[],
  batch: DeviceLlamaBatch,
  plant: string | undefined,
): { loss: number; gradients: Map<string, Float32Array> } {
  const model = DeviceLlama.fromNamedArrays(device, config, arrays, {
    dtype: 'bfloat16',
    gradientCheckpointing: true,
  });
  const parameters = model.parameters();
  const backend = new CudaBlockBackend(device, parameters);
  const optimizer = new BlockOptimizer(
    {
      baseOptimizer: { type: 'adamw', learningRate: 1e-4 },
      namedParameters: parameters,
      blockPrefixList: [['model.layers.0.']],
      switchBlockEvery: 10,
      clipGradNorm: 1,
      verbose: 0,
    },
    backend,
  );
  try {
    const trainable = optimizer.trainableNames;
    const { loss } = model.lossAndGradients(batch, trainable, (name) => backend.gradientOf(name));
    const gradients = new Map(trainable.map((name) => [name, backend.gradientOf(name).read()]));
    if (plant !== undefined) {
      const g = gradients.get(plant);
      if (g === undefined)
        throw new Error(`self-check: --plant ${plant} is not a parameter of the active block`);
      for (let i = 0; i < g.length; i++) g[i]! *= 1.5;
    }
    optimizer.step(); // the update runs too: clipping reads every gradient before any matrix moves
    return { loss, gradients };
  } finally {
    optimizer.dispose();
    backend.dispose();
    model.dispose();
  }
}

/**
 * Compares one BAdam step of each small Llama on `device` with the same step on `reference` (the CPU
 * device). Passes when every loss and every gradient of the active block agree within bf16 tolerance.
 *
 * @example
 * ```ts
 * const result = llamaSelfCheck(Device.cuda(), Device.cpu());
 * if (!result.passed) throw new Error(JSON.stringify(result.cases));
 * ```
 */
export function llamaSelfCheck(
  device: Device,
  reference: Device,
  options: SelfCheckOptions = {},
): SelfCheckResult {
  const cases = CASES.map(({ name, config: fields, lengths }): SelfCheckCase => {
    const config = llamaConfigFromHf({ model_type: 'llama', max_position_embeddings: 128, ...fields });
    const arrays = initialArrays(config);
    const batch = batchOf(config, lengths);
    const tested = stepOn(device, config, arrays, batch, options.plant);
    const cpu = stepOn(reference, config, arrays, batch, undefined);
    const lossError = Math.abs(tested.loss - cpu.loss) / Math.abs(cpu.loss);
    const gradients = [...cpu.gradients]
      .map(([n, want]) => ({ name: n, relError: relativeError(tested.gradients.get(n)!, want) }))
      .sort((a, b) => b.relError - a.relError || a.name.localeCompare(b.name));
    const passed =
      lossError <= TOLERANCE.loss &&
      gradients.every((g) => g.relError <= TOLERANCE.gradient && Number.isFinite(g.relError));
    return { name, loss: { device: tested.loss, cpu: cpu.loss, relError: lossError }, gradients, passed };
  });
  const d = device.description;
  return {
    passed: cases.every((c) => c.passed),
    device: d.kind === 'cpu' ? 'cpu device' : `${d.name} (sm_${d.computeCapability.replace('.', '')})`,
    tolerance: TOLERANCE,
    cases,
  };
}

/** The worst mismatches of a failed check, one line each, for a person to read. */
export function describeMismatches(result: SelfCheckResult, count = 5): string[] {
  const lines: string[] = [];
  for (const c of result.cases) {
    if (c.passed) continue;
    lines.push(
      `${c.name}: loss ${c.loss.device} vs ${c.loss.cpu} on the CPU device (rel ${c.loss.relError.toExponential(2)}, <= ${result.tolerance.loss})`,
    );
    for (const g of c.gradients.slice(0, count))
      lines.push(`  ${g.name}: rel error ${g.relError.toExponential(2)} (<= ${result.tolerance.gradient})`);
  }
  return lines;
}
