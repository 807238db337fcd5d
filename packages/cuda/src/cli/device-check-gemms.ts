/**
 * The GEMMs of the benchmark's steps in badam-cuda-check: every distinct GEMM of one Llama 3-8B (2 x 512) and
 * one TinyLlama-1.1B (4 x 512) step with the bottom layer trained (the longest backward), as
 * llamaStepGemms lists them: the fused projections (1024- and 2048-token NT), the input gradients (NN), the
 * weight gradients (TN, into the bf16 gradient buffers, through the column blocks of the fused
 * activations), the logits and the 128,256-column logit gradient; each timed alone, and their sum per step.
 */
import { llamaConfigFromHf } from '@badam/core';
import type { Device } from '../device.js';
import { BENCH_LLAMA_CONFIGS } from '../llama/bench-configs.js';
import { llamaParameterSpecs } from '../llama/llama-parameters.js';
import { llamaStepGemms, type StepGemm } from '../llama/step-gemms.js';

/** What device-check.ts lends: its timing helper and its report's list. */
export interface GemmTimingContext {
  gpu: Device;
  /** The dry run: a tiny config in place of the two (the CPU device runs it). */
  tiny: boolean;
  timings: Record<string, number | string>[];
  time(device: Device, reps: number, f: () => void): number;
}

/** The elements a row-major operand of rows x cols with leading dimension ld spans. */
const span = (rows: number, cols: number, ld: number | undefined) => (rows - 1) * (ld ?? cols) + cols;

/** Times one GEMM `reps` times on fresh operands; seconds per call. */
function timeGemm(ctx: GemmTimingContext, g: StepGemm, reps: number): number {
  const { gpu } = ctx;
  const { m, n, k, transA, transB, lda, ldb, ldc } = g.shape;
  const a = gpu.empty([transA ? span(k, m, lda) : span(m, k, lda)], g.ab, 'workspace').fill(0.01);
  const b = gpu.empty([transB ? span(n, k, ldb) : span(k, n, ldb)], g.ab, 'workspace').fill(0.01);
  const c = gpu.empty([span(m, n, ldc)], g.c, 'workspace').fill(0);
  try {
    return ctx.time(gpu, reps, () => gpu.gemm(a, b, c, g.shape));
  } finally {
    for (const t of [a, b, c]) t.free();
  }
}

/** Each config's step GEMMs, grouped by identity, timed, and summed per step. */
export function stepGemmTimings(ctx: GemmTimingContext): void {
  const runs: Array<[string, number, number]> = ctx.tiny
    ? [['tiny', 2, 16]]
    : [
        ['llama3-8b', 2, 512],
        ['tinyllama-1.1b', 4, 512],
      ];
  for (const [name, batchSize, seqLength] of runs) {
    const config = llamaConfigFromHf(
      { model_type: 'llama', ...BENCH_LLAMA_CONFIGS[name], tie_word_embeddings: false },
      name,
    );
    const trainable = llamaParameterSpecs(config)
      .map((spec) => spec.name)
      .filter((n) => n.startsWith('model.layers.0.'));
    const gemms = llamaStepGemms(config, {
      batchSize,
      seqLength,
      dtype: 'bfloat16',
      gradientCheckpointing: true,
      trainable,
    });
    const groups = new Map<string, { gemm: StepGemm; count: number }>();
    for (const g of gemms) {
      const s = g.shape;
      const id = `${g.label} ${s.m} ${s.n} ${s.k} ${s.transA} ${s.transB} ${s.lda} ${g.c}`;
      const group = groups.get(id);
      if (group) group.count++;
      else groups.set(id, { gemm: g, count: 1 });
    }
    let stepSeconds = 0;
    let stepFlops = 0;
    for (const { gemm: g, count } of groups.values()) {
      const seconds = timeGemm(ctx, g, ctx.tiny ? 1 : 5);
      const flops = 2 * g.shape.m * g.shape.n * g.shape.k;
      stepSeconds += count * seconds;
      stepFlops += count * flops;
      ctx.timings.push({
        what: `${name} step GEMM: ${g.label}`,
        size: `${g.shape.m}x${g.shape.n}x${g.shape.k} ${g.shape.transA ? 'T' : 'N'}${g.shape.transB ? 'T' : 'N'}${g.c === 'float32' ? ' -> fp32' : ''}`,
        'per step': count,
        ms: (seconds * 1e3).toFixed(3),
        'TFLOP/s': (flops / seconds / 1e12).toFixed(1),
      });
    }
    ctx.timings.push({
      what: `${name} step GEMMs in all (${batchSize} x ${seqLength}, bottom layer trained, checkpointing)`,
      size: `${gemms.length} GEMMs`,
      ms: (stepSeconds * 1e3).toFixed(1),
      'TFLOP/s': (stepFlops / stepSeconds / 1e12).toFixed(1),
    });
    ctx.gpu.emptyCache();
  }
}
