import type { DecoderArchitecture } from '../architectures/model-architecture.js';
import { requireInteger, requireNumber } from '../validation.js';
import { type LlamaStepDType, llamaStepMemory } from './llama-step-memory.js';

/** What {@link largestMicroBatches} searches. */
export interface DeviceFitOptions {
  /** The device's memory, bytes (a 24 GB card: 24 * 2^30). */
  deviceMemory: number;
  /**
   * Bytes kept out of the allocator's reach: the CUDA context, cuBLAS's kernels and the caching allocator's
   * rounding of blocks, which its accounting (the model's) does not count.
   */
  reserve: number;
  dtype: LlamaStepDType;
  gradientCheckpointing: boolean;
  /** The trainable sets a run goes through (BAdam's blocks, or one set of everything for full Adam). */
  blocks: readonly (readonly string[])[];
  /** The sequence lengths to answer for. */
  seqLengths: readonly number[];
  /** The GEMM library's workspace, held all along (cuBLAS: 32 MiB on Hopper, 4 MiB before). */
  gemmWorkspaceBytes: number;
  /** The largest batch tried. Default 4096. */
  maxBatch?: number;
}

/** The answer for one sequence length. */
export interface DeviceFit {
  readonly seqLength: number;
  /** The largest micro-batch whose peak fits (0: not even one sequence). */
  readonly batchSize: number;
  /** batchSize * seqLength. */
  readonly tokens: number;
  /** The peak at batchSize (at 1 when none fits), over the blocks. */
  readonly peak: number;
  /** Index in `blocks` of the block that sets that peak. */
  readonly worstBlock: number;
}

/**
 * For each sequence length, the largest micro-batch of a Llama whose step on @badam/cuda peaks within the
 * device's memory less `reserve`, over every block of the run: {@link llamaStepMemory}, the model the CPU
 * device's allocator checks to the byte, searched by bisection (the peak grows with the batch).
 *
 * @example
 * ```ts
 * largestMicroBatches(arch, { deviceMemory: 24 * 2 ** 30, reserve: 2 ** 30, dtype: 'bfloat16',
 *   gradientCheckpointing: true, blocks, seqLengths: [512, 2048], gemmWorkspaceBytes: 32 << 20 });
 * ```
 */
export function largestMicroBatches(
  architecture: DecoderArchitecture,
  options: DeviceFitOptions,
): DeviceFit[] {
  const budget =
    requireNumber('deviceMemory', options.deviceMemory, { min: 0, exclusiveMin: true }) -
    requireNumber('reserve', options.reserve, { min: 0 });
  const maxBatch = requireInteger('maxBatch', options.maxBatch ?? 4096, { min: 1 });
  return options.seqLengths.map((s) => {
    const seqLength = requireInteger('seqLength', s, { min: 2 });
    const peakAt = (batchSize: number) => {
      let peak = 0;
      let worstBlock = 0;
      options.blocks.forEach((trainable, i) => {
        const p = llamaStepMemory(architecture, {
          batchSize,
          seqLength,
          dtype: options.dtype,
          gradientCheckpointing: options.gradientCheckpointing,
          trainable,
          maxPositions: Math.min(architecture.maxPositionEmbeddings, 4096),
          gemmWorkspaceBytes: options.gemmWorkspaceBytes,
        }).peak;
        if (p > peak) {
          peak = p;
          worstBlock = i;
        }
      });
      return { peak, worstBlock };
    };
    const one = peakAt(1);
    if (one.peak > budget) return { seqLength, batchSize: 0, tokens: 0, ...one };
    let [fits, tooBig] = [1, maxBatch + 1];
    while (tooBig - fits > 1) {
      const mid = Math.floor((fits + tooBig) / 2);
      if (peakAt(mid).peak <= budget) fits = mid;
      else tooBig = mid;
    }
    return { seqLength, batchSize: fits, tokens: fits * seqLength, ...peakAt(fits) };
  });
}
