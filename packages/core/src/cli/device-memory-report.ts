import type { ModelArchitecture } from '../architectures/model-architecture.js';
import type { DType } from '../dtype.js';
import { BadamOptionError } from '../errors.js';
import { type DeviceFit, largestMicroBatches } from '../memory/device-fit.js';
import { textTable } from './text-table.js';

/** A number of GiB >= 0 from a flag, or `fallback` when it is absent. */
function gibOf(flag: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!(Number.isFinite(value) && value >= 0)) throw new BadamOptionError(flag, text, 'a number of GiB >= 0');
  return value;
}

/** What the command had parsed when --device-memory was given. */
export interface DeviceMemoryContext {
  architecture: ModelArchitecture;
  label: string;
  dtype: DType;
  checkpointing: boolean;
  /** Every parameter name (full Adam's one block). */
  names: readonly string[];
  /** BAdam's blocks. */
  blocks: readonly (readonly string[])[];
  seqLength: number;
}

/** The --device-memory answer for the command's flags: the text, or with --json the JSON. */
export function deviceMemoryOutput(
  values: {
    'device-memory'?: string;
    method?: string;
    reserve?: string;
    'seq-length'?: string;
    json?: boolean;
  },
  c: DeviceMemoryContext,
): string {
  const method = values.method ?? 'badam';
  if (method !== 'badam' && method !== 'adam')
    throw new BadamOptionError('--method', method, 'badam or adam (the methods @badam/cuda runs)');
  const answer = answerDeviceMemory({
    architecture: c.architecture,
    label: c.label,
    dtype: c.dtype,
    deviceGib: gibOf('--device-memory', values['device-memory'], 0),
    reserveGib: gibOf('--reserve', values.reserve, 1),
    method,
    gradientCheckpointing: c.checkpointing,
    blocks: method === 'adam' ? [c.names] : c.blocks,
    seqLength: values['seq-length'] === undefined ? undefined : c.seqLength,
  });
  return values.json
    ? JSON.stringify({ model: c.label, dtype: c.dtype, deviceMemory: answer.json }, null, 2)
    : answer.text;
}

/** cuBLAS's workspace on Hopper (NVIDIA's guidance; other cards take 4 MiB): the larger, to be safe. */
const GEMM_WORKSPACE = 32 * 2 ** 20;
const GIB = 2 ** 30;
const SEQ_LENGTHS = [256, 512, 1024, 2048, 4096, 8192];

/** What `badam-estimate --device-memory` was asked. */
export interface DeviceMemoryQuestion {
  architecture: ModelArchitecture;
  label: string;
  dtype: DType;
  /** GiB of device memory, and GiB of it kept out of the allocator's reach. */
  deviceGib: number;
  reserveGib: number;
  method: 'badam' | 'adam';
  gradientCheckpointing: boolean;
  /** BAdam's blocks (the partition), or for full Adam one block of every parameter. */
  blocks: readonly (readonly string[])[];
  /** --seq-length, when given: answer for it alone. */
  seqLength?: number;
}

/** The answer: the text to print, and the fits for --json. */
export interface DeviceMemoryAnswer {
  text: string;
  json: {
    deviceGib: number;
    reserveGib: number;
    method: 'badam' | 'adam';
    gradientCheckpointing: boolean;
    gemmWorkspaceBytes: number;
    fits: DeviceFit[];
  };
}

/**
 * `badam-estimate --device-memory GIB`: for each sequence length, the largest micro-batch of a Llama-family
 * model whose BAdam (or full Adam) step on @badam/cuda fits, from core's llamaStepMemory, the allocator-exact
 * model @badam/cuda's CPU device checks.
 */
export function answerDeviceMemory(q: DeviceMemoryQuestion): DeviceMemoryAnswer {
  const a = q.architecture;
  if (a.kind !== 'decoder') {
    throw new BadamOptionError(
      '--device-memory',
      `${a.family} (an encoder)`,
      'a Llama-family decoder (Llama, Mistral, Qwen2): the models @badam/cuda trains',
    );
  }
  if (q.dtype !== 'bfloat16' && q.dtype !== 'float16' && q.dtype !== 'float32') {
    throw new BadamOptionError('--dtype', q.dtype, 'bf16, fp16 or fp32 with --device-memory');
  }
  if (!(q.deviceGib > q.reserveGib)) {
    throw new BadamOptionError('--device-memory', q.deviceGib, `more than --reserve (${q.reserveGib} GiB)`);
  }
  const seqLengths =
    q.seqLength !== undefined ? [q.seqLength] : SEQ_LENGTHS.filter((s) => s <= a.maxPositionEmbeddings);
  const fits = largestMicroBatches(a, {
    deviceMemory: q.deviceGib * GIB,
    reserve: q.reserveGib * GIB,
    dtype: q.dtype,
    gradientCheckpointing: q.gradientCheckpointing,
    blocks: q.blocks,
    seqLengths,
    gemmWorkspaceBytes: GEMM_WORKSPACE,
  });
  const what = q.method === 'badam' ? `BAdam (D = ${q.blocks.length})` : 'full Adam';
  const worst = (f: DeviceFit) => {
    const names = q.blocks[f.worstBlock] ?? [];
    const layer = /^model\.layers\.\d+\./.exec(names[0] ?? '');
    return q.method === 'adam' ? 'all' : layer ? `${layer[0]}*` : (names[0] ?? '-');
  };
  const rows = fits.map((f) => [
    String(f.seqLength),
    f.batchSize > 0 ? String(f.batchSize) : 'none',
    String(f.tokens),
    (f.peak / GIB).toFixed(2),
    worst(f),
  ]);
  const text = [
    `${q.label}: ${what}, weights and activations ${q.dtype}, gradient checkpointing ${q.gradientCheckpointing ? 'on' : 'off'}`,
    `Device memory ${q.deviceGib} GiB, less ${q.reserveGib} GiB kept for the CUDA context, cuBLAS and the allocator's rounding:`,
    `the largest micro-batch per sequence length whose step peaks within ${(q.deviceGib - q.reserveGib).toFixed(2)} GiB`,
    '',
    textTable(['seq length', 'batch', 'tokens', 'peak GiB', 'block at the peak'], rows),
    '',
    "Peak: @badam/cuda's caching allocator, step and update (core's llamaStepMemory, checked to the byte on its",
    "CPU device), with cuBLAS's 32 MiB workspace. peak GiB is at that batch (at batch 1 when none fits).",
  ].join('\n');
  return {
    text,
    json: {
      deviceGib: q.deviceGib,
      reserveGib: q.reserveGib,
      method: q.method,
      gradientCheckpointing: q.gradientCheckpointing,
      gemmWorkspaceBytes: GEMM_WORKSPACE,
      fits,
    },
  };
}
