#!/usr/bin/env node
/**
 * The GPU Llama benchmark: BAdam training steps of a randomly initialised Llama on @badam/cuda, the same
 * workload as the PyTorch peer (../shared/bench/torch_badam.py): Llama 3-8B at batch 2 x 512 and
 * TinyLlama-1.1B at batch 4 x 512, bf16 weights, gradient checkpointing, one layer per block switched
 * every K = 5 steps (the peer's default), AdamW at 1e-5, random token batches with labels = inputs. Warm-up
 * steps, then timed steps; prints one JSON line per run, like the peer: tokens/s, the allocator's peak
 * (GiB) in all and by kind, and the share of a step spent in forward, backward and the optimizer.
 *
 *   node packages/cuda/dist/bench/llama-train.js [--config llama3-8b,tinyllama-1.1b] [--steps 14] [--warm 4]
 *        [--switch-every 5] [--batch N] [--seq N] [--cuda-device 0|cpu] [--dry-run]
 *
 * `--dry-run` runs the same code at a tiny size on the CPU device in seconds (CI checks its JSON).
 *
 * How the phases are timed: `DeviceLlama.lossAndGradients` is forward and backward in one call, so each
 * timed step is split with `device.synchronize()` into forward + backward (that call) and the optimizer
 * (`BlockOptimizer.step`: the fused AdamW of the active block, and on a switch the block's masters and
 * state); after the timed steps, forward alone is timed as evaluation passes on the same batch (the loss
 * without gradients), and backward is the rest of forward + backward. With gradient checkpointing,
 * backward includes the recomputed forward of each layer, as on PyTorch.
 */
import { realpathSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import {
  BlockOptimizer,
  type LlamaConfig,
  llamaConfigFromHf,
  type NamedArray,
  SeededRandom,
} from '@badam/core';
import { describeMismatches, llamaSelfCheck, type SelfCheckResult } from '../src/cli/llama-self-check.js';
import {
  CudaBlockBackend,
  type CudaParameter,
  Device,
  DeviceLlama,
  type DeviceLlamaBatch,
} from '../src/index.js';
import { BENCH_LLAMA_CONFIGS } from '../src/llama/bench-configs.js';
import { llamaParameterSpecs } from '../src/llama/llama-parameters.js';

/** The peer's configs (torch_badam.py CONFIGS) and the dry run's, as Hugging Face config.json fields. */
export const BENCH_CONFIGS = BENCH_LLAMA_CONFIGS;

/** The peer's batch per config (torch_badam.py's docstring commands). */
const BATCH: Readonly<Record<string, number>> = { 'llama3-8b': 2, 'tinyllama-1.1b': 4, tiny: 2 };

/**
 * Random bf16 weights for a speed benchmark, made fast: an 8B model drawn element by element in JavaScript
 * (`DeviceLlama.create`, which matches @badam/models' initialisation) takes minutes of host time. Here one
 * block of N(0, 0.02) samples (a prime length, so rows do not repeat in step) is tiled over every matrix
 * as bf16 bits, and every weight is a view of one buffer of the largest matrix's size; norms are ones, as
 * in Hugging Face's initialisation. Speed and memory do not depend on the values; the loss starts near
 * ln(vocab) as the peer's does.
 */
export function benchmarkWeights(config: LlamaConfig, seed = 0): NamedArray[] {
  const specs = llamaParameterSpecs(config);
  const largest = Math.max(...specs.map((p) => p.shape.reduce((a, b) => a * b, 1)));
  const period = Math.min(1_000_003, largest);
  const rng = SeededRandom.fromSeed(seed);
  const block = new Float32Array(period);
  for (let i = 0; i < period; i += 2) {
    // Box-Muller: two N(0, 1) samples per pair of uniforms.
    const r = Math.sqrt(-2 * Math.log(1 - rng.nextFloat()));
    const t = 2 * Math.PI * rng.nextFloat();
    block[i] = 0.02 * r * Math.cos(t);
    if (i + 1 < period) block[i + 1] = 0.02 * r * Math.sin(t);
  }
  const bits = bfloat16Bits(block);
  const normal = new Uint16Array(largest);
  for (let at = 0; at < largest; at += period)
    normal.set(bits.subarray(0, Math.min(period, largest - at)), at);
  const ones = new Uint16Array(config.hiddenSize).fill(0x3f80); // bf16 1.0
  return specs.map((p) => {
    const n = p.shape.reduce((a, b) => a * b, 1);
    const data =
      p.init === 'ones'
        ? ones.subarray(0, n)
        : p.init === 'zeros'
          ? new Uint16Array(n)
          : normal.subarray(0, n);
    return { name: p.name, dtype: 'bfloat16', shape: [...p.shape], data } as NamedArray;
  });
}

/** bf16 bits of fp32 values, rounded to nearest even. */
function bfloat16Bits(values: Float32Array): Uint16Array {
  const words = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    out[i] = (w + 0x7fff + ((w >>> 16) & 1)) >>> 16;
  }
  return out;
}

/** One benchmark run. */
export interface LlamaBenchOptions {
  readonly config: string;
  readonly batch: number;
  readonly seq: number;
  readonly steps: number;
  readonly warm: number;
  readonly switchEvery: number;
  readonly device: Device;
  /** Forward-only passes timed after the steps, for the forward / backward split. */
  readonly forwardPasses?: number;
}

const GIB = 2 ** 30;
const gib = (bytes: number) => Math.round((bytes / GIB) * 1000) / 1000;
const round = (x: number, digits: number) => Number(x.toFixed(digits));

/** Kinds the model and BAdam hold between steps; the rest of a pass's peak is activations and workspace. */
const HELD = ['weights', 'masters', 'gradients', 'optimizerState'] as const;

/** Runs one benchmark and returns its JSON record (the peer's fields, and ours beside them). */
export function runLlamaBench(o: LlamaBenchOptions): Record<string, unknown> {
  const { device } = o;
  const config: LlamaConfig = llamaConfigFromHf(
    { model_type: 'llama', ...BENCH_CONFIGS[o.config], tie_word_embeddings: false },
    o.config,
  );
  device.emptyCache();
  device.resetPeaks();
  let model: DeviceLlama | undefined;
  let optimizer: BlockOptimizer | undefined;
  let initSeconds = 0;
  try {
    const initStart = performance.now();
    model = DeviceLlama.fromNamedArrays(device, config, benchmarkWeights(config), {
      dtype: 'bfloat16',
      gradientCheckpointing: true,
      maxPositions: o.seq,
    });
    device.synchronize();
    initSeconds = (performance.now() - initStart) / 1000;
    const parameters = model.parameters();
    const backend = new CudaBlockBackend(device, parameters);
    optimizer = new BlockOptimizer(
      {
        namedParameters: parameters,
        baseOptimizer: { type: 'adamw', learningRate: 1e-5, weightDecay: 0 },
        switchBlockEvery: o.switchEvery,
        switchMode: 'ascending',
        verbose: 0,
      },
      backend,
    );
    const rng = SeededRandom.fromSeed(0);
    const tokens = new Int32Array(o.batch * o.seq);
    for (let i = 0; i < tokens.length; i++) tokens[i] = Math.floor(rng.nextFloat() * config.vocabSize);
    const batch: DeviceLlamaBatch = { batchSize: o.batch, seqLen: o.seq, inputIds: tokens, labels: tokens };

    const run = { ...timedSteps(o, model, backend, optimizer, batch), initSeconds };
    return benchRecord(o, run, parameters);
  } catch (error) {
    const message = (error as Error).message;
    if (!/out of memory/i.test(message)) throw error;
    return { peer: 'badam-ts', config: o.config, mode: 'badam', error: 'OOM', message };
  } finally {
    optimizer?.dispose();
    model?.dispose();
    device.emptyCache();
  }
}

/** What the timed steps measured. */
interface TimedRun {
  /** Seconds per timed step, and per step in forward + backward and in the optimizer; forward alone. */
  step: number;
  forwardBackward: number;
  optimizer: number;
  forward: number;
  /** The first and the last step's loss. */
  firstLoss: number;
  loss: number;
  /** The allocator's peak over the run, and the peak of each kind (activations: a pass's peak less what is held). */
  peak: number;
  peaks: Record<string, number>;
  initSeconds: number;
}

/**
 * `o.steps` BAdam steps (the first `o.warm` untimed), each split into forward + backward and the optimizer by
 * synchronisations, sampling the allocator around each pass; then `forwardPasses` evaluation passes for the
 * forward alone.
 */
function timedSteps(
  o: LlamaBenchOptions,
  model: DeviceLlama,
  backend: CudaBlockBackend,
  optimizer: BlockOptimizer,
  batch: DeviceLlamaBatch,
): Omit<TimedRun, 'initSeconds'> {
  const { device } = o;
  const peaks: Record<string, number> = {};
  let peak = 0;
  const sample = (afterPass: boolean) => {
    const stats = device.memory();
    peak = Math.max(peak, stats.peakInUse);
    let held = 0;
    for (const kind of HELD) {
      held += stats.byKind[kind];
      peaks[kind] = Math.max(peaks[kind] ?? 0, stats.byKind[kind]);
    }
    if (afterPass) peaks.activations = Math.max(peaks.activations ?? 0, stats.peakInUse - held);
    device.resetPeaks();
  };

  let fbSeconds = 0;
  let optimizerSeconds = 0;
  let loss = Number.NaN;
  let firstLoss = Number.NaN;
  let t0 = 0;
  for (let s = 0; s < o.steps; s++) {
    if (s === o.warm) {
      device.synchronize();
      t0 = performance.now();
      fbSeconds = 0;
      optimizerSeconds = 0;
    }
    device.synchronize();
    const a = performance.now();
    sample(false);
    loss = model.lossAndGradients(batch, optimizer.trainableNames, (name) => backend.gradientOf(name)).loss;
    if (s === 0) firstLoss = loss;
    device.synchronize();
    sample(true);
    const b = performance.now();
    optimizer.step();
    device.synchronize();
    const c = performance.now();
    fbSeconds += (b - a) / 1000;
    optimizerSeconds += (c - b) / 1000;
  }
  device.synchronize();
  const timed = o.steps - o.warm;
  const elapsed = (performance.now() - t0) / 1000;
  sample(false);

  const passes = o.forwardPasses ?? 3;
  device.synchronize();
  const f0 = performance.now();
  for (let i = 0; i < passes; i++) model.evaluate(batch);
  device.synchronize();
  const forward = (performance.now() - f0) / 1000 / passes;

  const step = elapsed / timed;
  return {
    step,
    forwardBackward: fbSeconds / timed,
    optimizer: optimizerSeconds / timed,
    forward,
    firstLoss,
    loss,
    peak,
    peaks,
  };
}

/** The JSON record of a run: the peer's fields (tok_s, peak_gib, step_s, last_loss) and ours beside them. */
function benchRecord(
  o: LlamaBenchOptions,
  run: TimedRun,
  parameters: readonly CudaParameter[],
): Record<string, unknown> {
  const { step, forward, peaks, peak, loss } = run;
  const opt = run.optimizer;
  const backward = Math.max(0, run.forwardBackward - forward);
  const d = o.device.description;
  return {
    peer: 'badam-ts',
    config: o.config,
    mode: 'badam',
    batch: o.batch,
    seq: o.seq,
    peak_gib: gib(peak),
    step_s: round(step, 4),
    tok_s: round((o.batch * o.seq) / step, 1),
    last_loss: round(loss, 4),
    first_loss: round(run.firstLoss, 4),
    peak_gib_by_kind: {
      weights: gib(peaks.weights ?? 0),
      masters: gib(peaks.masters ?? 0),
      gradients: gib(peaks.gradients ?? 0),
      optimizer_state: gib(peaks.optimizerState ?? 0),
      activations: gib(peaks.activations ?? 0),
    },
    peak_bytes: peak,
    peak_bytes_by_kind: {
      weights: peaks.weights ?? 0,
      masters: peaks.masters ?? 0,
      gradients: peaks.gradients ?? 0,
      optimizer_state: peaks.optimizerState ?? 0,
      activations: peaks.activations ?? 0,
    },
    phase_s: { forward: round(forward, 4), backward: round(backward, 4), optimizer: round(opt, 4) },
    phase_share: {
      forward: round(forward / step, 3),
      backward: round(backward / step, 3),
      optimizer: round(opt / step, 3),
    },
    dtype: 'bfloat16',
    gradient_checkpointing: true,
    switch_every: o.switchEvery,
    steps: o.steps,
    warm: o.warm,
    init_s: round(run.initSeconds, 2),
    parameters: parameters.reduce((n, p) => n + p.shape.reduce((x, y) => x * y, 1), 0),
    device: d.kind === 'cpu' ? 'cpu reference' : `${d.name} (${d.gemmLibrary})`,
  };
}

/**
 * The loss a randomly initialised model starts near: ln(vocab), plus half the variance of its logits
 * (unit-RMS hidden states times N(0, 0.02^2) head weights: 0.0004 * hidden), 12.6 for Llama 3-8B.
 */
export function expectedFirstLoss(config: Record<string, unknown>): number {
  return Math.log(config.vocab_size as number) + 0.0002 * (config.hidden_size as number);
}

/** How far the first loss may be from {@link expectedFirstLoss} before the run stops as wrong. */
export const FIRST_LOSS_TOLERANCE = 1;

/** The self-check's summary for the JSON line: pass, tolerance, and the worst gradients of each case. */
function selfCheckSummary(result: SelfCheckResult): Record<string, unknown> {
  return {
    passed: result.passed,
    device: result.device,
    tolerance: result.tolerance,
    cases: result.cases.map((c) => ({
      name: c.name,
      passed: c.passed,
      loss_rel_error: Number(c.loss.relError.toExponential(2)),
      worst: c.gradients
        .slice(0, 3)
        .map((g) => ({ name: g.name, rel_error: Number(g.relError.toExponential(2)) })),
    })),
  };
}

/** The command line: the self-check, then each config; one JSON line per run with `write`. */
export function main(argv: readonly string[], write: (line: string) => void = console.log): number {
  // `pnpm bench -- --dry-run` passes the `--` on.
  const args = argv.filter((a) => a !== '--');
  const { values } = parseArgs({
    args,
    options: {
      config: { type: 'string' },
      steps: { type: 'string' },
      warm: { type: 'string' },
      'switch-every': { type: 'string', default: '5' },
      batch: { type: 'string' },
      seq: { type: 'string' },
      'cuda-device': { type: 'string', default: '0' },
      'dry-run': { type: 'boolean', default: false },
      'self-check-only': { type: 'boolean', default: false },
      // gpu-run.sh runs the check first, alone, and stops when it fails: it passes this to the runs after.
      'self-check-done': { type: 'boolean', default: false },
    },
  });
  const dry = values['dry-run'] === true;
  const configs = (values.config ?? (dry ? 'tiny' : 'llama3-8b,tinyllama-1.1b')).split(',');
  for (const c of configs) {
    if (BENCH_CONFIGS[c] === undefined) {
      console.error(`llama-train: --config ${c} is not one of ${Object.keys(BENCH_CONFIGS).join(', ')}`);
      return 2;
    }
  }
  const choice = dry ? 'cpu' : values['cuda-device'];
  let device: Device;
  try {
    device = choice === 'cpu' ? Device.cpu() : Device.cuda(Number(choice));
  } catch (error) {
    console.error(`llama-train: ${(error as Error).message} (--dry-run runs it on the CPU device)`);
    return 2;
  }
  // Before anything is timed: one BAdam step of small Llamas here and on the CPU device must agree.
  // BADAM_SELF_CHECK_PLANT (a parameter name) plants a wrong gradient, to show that this stops the run.
  const check = llamaSelfCheck(device, Device.cpu(), {
    plant: process.env.BADAM_SELF_CHECK_PLANT || undefined,
  });
  const selfCheck = selfCheckSummary(check);
  if (!check.passed) {
    console.error(
      `llama-train: self-check failed on ${check.device}: a BAdam step differs from the CPU device's; nothing is timed`,
    );
    for (const line of describeMismatches(check)) console.error(`llama-train:   ${line}`);
    write(JSON.stringify({ selfCheck }));
    return 1;
  }
  if (values['self-check-only']) {
    write(JSON.stringify({ selfCheck }));
    return 0;
  }
  return runConfigs(configs, values, device, dry, selfCheck, write);
}

/** Each config's benchmark, one JSON line each; stops (exit code 1) at a first loss far from ln(vocab). */
function runConfigs(
  configs: readonly string[],
  values: Record<string, string | boolean | undefined>,
  device: Device,
  dry: boolean,
  selfCheck: Record<string, unknown>,
  write: (line: string) => void,
): number {
  const int = (v: string | boolean | undefined, fallback: number) =>
    typeof v === 'string' ? Number.parseInt(v, 10) : fallback;
  for (const config of configs) {
    const record = runLlamaBench({
      config,
      batch: int(values.batch, BATCH[config] ?? 2),
      seq: int(values.seq, dry ? 16 : 512),
      steps: int(values.steps, dry ? 4 : 14),
      warm: int(values.warm, dry ? 1 : 4),
      switchEvery: int(values['switch-every'], 5),
      device,
      forwardPasses: dry ? 1 : 3,
    });
    const expected = expectedFirstLoss(BENCH_CONFIGS[config]!);
    const first = record.first_loss as number | undefined;
    const firstLossOk = first === undefined || Math.abs(first - expected) <= FIRST_LOSS_TOLERANCE;
    write(
      JSON.stringify({
        ...record,
        expected_first_loss: round(expected, 4),
        selfCheck,
        ...(dry ? { dry_run: true } : {}),
      }),
    );
    if (!firstLossOk) {
      console.error(
        `llama-train: ${config}: the first loss ${first} is not near ${expected.toFixed(2)} (ln(vocab) + 0.0002 hidden, within ${FIRST_LOSS_TOLERANCE}); the step is wrong: stopping`,
      );
      return 1;
    }
  }
  return 0;
}

// Run as a program (node resolves a symlinked script to its real path in import.meta.url, not in argv).
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  process.exitCode = main(process.argv.slice(2));
}
