#!/usr/bin/env node
/**
 * badam-cuda-check: runs every kernel of @badam/cuda on the GPU against its C++ CPU reference on fresh random
 * data (outputs poisoned with NaN before each run, relative-error thresholds per dtype), drives
 * CudaBlockBackend against the CPU device through a BAdam schedule, and times fused AdamW and GEMM against
 * the ceilings it measures (device-to-device copy bandwidth; cuBLAS bf16 GEMM at a large square shape), and
 * every GEMM of one Llama 3-8B and one TinyLlama step at its exact shape (device-check-gemms.ts). The
 * Llama kernels (attention, RMSNorm, rope, SwiGLU, embeddings, cross-entropy, ...) are checked and
 * timed by device-check-llama.ts, including a Llama 3-8B-sized attention and a 128256-token vocabulary.
 * Prints a report and, with --out FILE, writes it as JSON. Exit code 1 when a check fails.
 *
 *   node packages/cuda/dist/src/cli/device-check.js [--out device-check.json] [--quick] [--dry-run]
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { BlockOptimizer, type NamedParameterInfo } from '@badam/core';
import type { TensorDType } from '../addon.js';
import { CudaBlockBackend } from '../cuda-block-backend.js';
import { Device } from '../device.js';
import type { DeviceTensor } from '../device-tensor.js';
import { stepGemmTimings } from './device-check-gemms.js';
import { llamaChecks, llamaTimings } from './device-check-llama.js';

const USAGE = `Usage: badam-cuda-check [--out device-check.json] [--quick] [--dry-run]

Runs every @badam/cuda kernel on the GPU against its C++ CPU reference, drives CudaBlockBackend through a
BAdam schedule, and times fused AdamW and GEMM against the GPU's measured ceilings. Exit code 1 when a check
fails.

  --out <file>   also write the report as JSON
  --quick        fewer and smaller cases
  --dry-run      the CPU device stands in for the GPU (a self-test of this script, no GPU needed)
  -V, --version  print the version
  -h, --help     show this help`;

/** The command line, or the usage error that ends the script with exit code 2 (no stack trace). */
function parseCommandLine() {
  try {
    return parseArgs({
      options: {
        out: { type: 'string' },
        quick: { type: 'boolean', default: false },
        // Runs the whole script with the CPU device in the GPU's place: a self-test of the script for CI.
        'dry-run': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
        version: { type: 'boolean', short: 'V', default: false },
      },
    }).values;
  } catch (error) {
    console.error(
      `badam-cuda-check: error: ${(error as Error).message}\nRun badam-cuda-check --help for the flags.`,
    );
    process.exit(2);
  }
}

const flags = parseCommandLine();
if (flags.help) {
  console.log(USAGE);
  process.exit(0);
}
if (flags.version) {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8'));
  console.log(`badam-cuda-check ${(pkg as { version: string }).version}`);
  process.exit(0);
}

export interface Check {
  kernel: string;
  case: string;
  maxRelError: number;
  threshold: number;
  ok: boolean;
}
const checks: Check[] = [];
const timings: Record<string, number | string>[] = [];

let seed = 12345;
function random(n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    seed ^= seed << 13;
    seed >>>= 0;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    seed >>>= 0;
    out[i] = ((seed / 2 ** 32) * 2 - 1) * scale;
  }
  return out;
}

/**
 * The largest |got - want| / max(|want|, floor); floor 'rms' is the root mean square of `want`, for sums of
 * many rounded terms (tensor-core attention) whose near-zero elements carry no relative precision.
 */
function relError(got: Float32Array, want: Float32Array, floorOrRms: number | 'rms'): number {
  let floor = floorOrRms;
  if (floor === 'rms') {
    let sum = 0;
    for (const w of want) sum += w * w;
    floor = Math.sqrt(sum / Math.max(want.length, 1));
  }
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i]! - want[i]!) / Math.max(Math.abs(want[i]!), floor);
    if (Number.isNaN(e)) return Number.POSITIVE_INFINITY; // an output the kernel never wrote (poison) or a NaN
    if (e > worst) worst = e;
  }
  return worst;
}

const THRESHOLD: Record<TensorDType, number> = {
  float32: 1e-5,
  bfloat16: 2 ** -7,
  float16: 2 ** -10,
  int32: 0,
};

function record(
  kernel: string,
  name: string,
  got: Float32Array,
  want: Float32Array,
  threshold: number,
  floor: number | 'rms' = 1e-3,
): void {
  const maxRelError = relError(got, want, floor);
  checks.push({ kernel, case: name, maxRelError, threshold, ok: maxRelError <= threshold });
}

/** The same operation on the GPU and the CPU reference; `run` gets a device and returns the output tensors. */
function compare(
  gpu: Device,
  cpu: Device,
  kernel: string,
  name: string,
  run: (d: Device) => Record<string, DeviceTensor>,
  thresholds: Record<string, number>,
  floors: Record<string, number | 'rms'> = {},
) {
  const onGpu = run(gpu);
  gpu.synchronize();
  const onCpu = run(cpu);
  for (const [output, tensor] of Object.entries(onGpu)) {
    record(
      kernel,
      `${name}: ${output}`,
      tensor.read(),
      onCpu[output]!.read(),
      thresholds[output] ?? THRESHOLD[tensor.dtype],
      floors[output],
    );
  }
  for (const t of [...Object.values(onGpu), ...Object.values(onCpu)]) t.free();
}

/** A tensor holding `values`, and an output tensor poisoned with NaN so unwritten elements are caught. */
const input = (d: Device, values: Float32Array, dtype: TensorDType) =>
  d.tensor(values, [values.length], dtype);
const poisoned = (d: Device, n: number, dtype: TensorDType) => d.empty([n], dtype).fill(Number.NaN);

/** Every optimizer kernel of the device, GPU against CPU on the same inputs. */
function kernelChecks(gpu: Device, cpu: Device, quick: boolean): void {
  const n = quick ? 100_003 : 3_000_017;
  castChecks(gpu, cpu, n);
  adamwChecks(gpu, cpu, n);
  reductionChecks(gpu, cpu, n);
  sparseAdamCheck(gpu, cpu, n);
  gemmChecks(gpu, cpu, quick);
}

/** Casts between every pair of float dtypes. */
function castChecks(gpu: Device, cpu: Device, n: number): void {
  const x = random(n, 100);
  for (const from of ['float32', 'bfloat16', 'float16'] as const) {
    for (const to of ['float32', 'bfloat16', 'float16'] as const) {
      compare(
        gpu,
        cpu,
        'cast',
        `${from} -> ${to}`,
        (d) => {
          const out = poisoned(d, n, to);
          d.cast(input(d, x, from), out);
          return { out };
        },
        { out: 0 },
      ); // casts are exact: the same rounding on both sides
    }
  }
}

/** Fused AdamW, every weight dtype with fp32 and bf16 gradients, several steps. */
function adamwChecks(gpu: Device, cpu: Device, n: number): void {
  for (const weightDtype of ['bfloat16', 'float16', 'float32'] as const) {
    for (const gradDtype of ['float32', 'bfloat16'] as const) {
      const w0 = random(n, 0.5);
      const grads = [1, 2, 3].map(() => random(n, 2));
      compare(
        gpu,
        cpu,
        'adamw',
        `${weightDtype} weight, ${gradDtype} grad, 3 steps`,
        (d) => {
          const weight = input(d, w0, weightDtype);
          const master = weightDtype === 'float32' ? null : d.castTo(weight, 'float32');
          const m = d.zeros([n], 'float32');
          const v = d.zeros([n], 'float32');
          grads.forEach((g, i) => {
            const grad = input(d, g, gradDtype);
            d.adamw(master, weight, grad, m, v, {
              lr: 1e-3,
              beta1: 0.9,
              beta2: 0.999,
              eps: 1e-8,
              weightDecay: 0.1,
              step: i + 1,
              gradScale: 0.5,
            });
            grad.free();
          });
          return { weight, m, v, ...(master ? { master } : {}) };
        },
        { weight: THRESHOLD[weightDtype], master: 1e-5, m: 1e-5, v: 1e-5 },
      );
    }
  }
}

/** Gradient norm (sum of squares), scale, accumulate. */
function reductionChecks(gpu: Device, cpu: Device, n: number): void {
  for (const dtype of ['float32', 'bfloat16'] as const) {
    const a = random(n, 3);
    const b = random(1234, 3);
    const got = gpu.sumSquares([input(gpu, a, dtype), input(gpu, b, dtype)]);
    const want = cpu.sumSquares([input(cpu, a, dtype), input(cpu, b, dtype)]);
    const e = Math.abs(got - want) / want;
    checks.push({
      kernel: 'sumSquares',
      case: `${dtype}, two tensors`,
      maxRelError: e,
      threshold: 1e-10,
      ok: e <= 1e-10,
    });
    compare(
      gpu,
      cpu,
      'scale',
      dtype,
      (d) => {
        const t = input(d, a, dtype);
        d.scale(t, 0.37);
        return { out: t };
      },
      { out: 0 },
    );
    const start = random(n);
    compare(
      gpu,
      cpu,
      'accumulate',
      `fp32 += ${dtype}`,
      (d) => {
        const dst = input(d, start, 'float32');
        d.accumulate(dst, input(d, a, dtype), 0.25);
        return { out: dst };
      },
      { out: 1e-6 },
    );
  }
}

/** Masked sparse Adam, with and without the rounded bf16 weight. */
function sparseAdamCheck(gpu: Device, cpu: Device, n: number): void {
  const k = Math.floor(n / 10);
  const indices = Int32Array.from({ length: k }, (_, j) => (j * 7919) % n);
  const p0 = random(n, 0.5);
  const sg = [1, 2].map(() => random(n, 1));
  compare(
    gpu,
    cpu,
    'sparseAdam',
    `k = n / 10, 2 steps`,
    (d) => {
      const param = input(d, p0, 'float32');
      const weight = input(d, p0, 'bfloat16');
      const idx = d.tensor(indices, [k], 'int32');
      const m = d.zeros([k], 'float32');
      const v = d.zeros([k], 'float32');
      for (const [i, g] of sg.entries()) {
        d.sparseAdam(param, weight, input(d, g, 'float32'), idx, m, v, {
          lr: 1e-3,
          beta1: 0.9,
          beta2: 0.999,
          eps: 1e-8,
          step: i + 1,
        });
      }
      idx.free();
      return { param, weight, m, v };
    },
    { param: 1e-5, weight: THRESHOLD.bfloat16, m: 1e-5, v: 1e-5 },
  );
}

/** GEMM: bf16 / fp16 / fp32 operands, every transpose, fp32 and 16-bit C. */
function gemmChecks(gpu: Device, cpu: Device, quick: boolean): void {
  const [m, nn, kk] = quick ? [64, 96, 80] : [192, 320, 256];
  for (const dtype of ['bfloat16', 'float16', 'float32'] as const) {
    const a = random(m * kk);
    const b = random(kk * nn);
    const c0 = random(m * nn);
    for (const [ta, tb] of [
      [false, false],
      [true, false],
      [false, true],
      [true, true],
    ] as const) {
      for (const cDtype of dtype === 'float32' ? (['float32'] as const) : (['float32', dtype] as const)) {
        compare(
          gpu,
          cpu,
          'gemm',
          `${dtype} A,B -> ${cDtype} C, transA ${ta}, transB ${tb}`,
          (d) => {
            const c = cDtype === 'float32' ? input(d, c0, 'float32') : poisoned(d, m * nn, cDtype);
            d.gemm(input(d, a, dtype), input(d, b, dtype), c, {
              m,
              n: nn,
              k: kk,
              transA: ta,
              transB: tb,
              alpha: 1,
              beta: cDtype === 'float32' ? 0.5 : 0,
            });
            return { c };
          },
          { c: cDtype === 'float32' ? 1e-4 : THRESHOLD[cDtype] },
        );
      }
    }
  }
}

function backendCheck(gpu: Device, cpu: Device): void {
  const shapes: Array<[string, number[]]> = [];
  for (let i = 0; i < 4; i++) {
    shapes.push([`model.layers.${i}.self_attn.q_proj.weight`, [256, 256]]);
    shapes.push([`model.layers.${i}.mlp.down_proj.weight`, [256, 688]]);
    shapes.push([`model.layers.${i}.input_layernorm.weight`, [256]]);
  }
  const params: NamedParameterInfo[] = shapes.map(([name, shape]) => ({ name, shape, dtype: 'bfloat16' }));
  const init = new Map(
    shapes.map(([name, shape]) => [
      name,
      random(
        shape.reduce((a, b) => a * b, 1),
        0.5,
      ),
    ]),
  );
  const grads = new Map<string, Float32Array[]>();
  const run = (device: Device) => {
    const before = device.memory().inUse;
    const backend = new CudaBlockBackend(
      device,
      params.map((p) => ({ ...p, values: init.get(p.name)! })),
    );
    const optimizer = new BlockOptimizer(
      {
        baseOptimizer: { type: 'adamw', weightDecay: 0.01 },
        namedParameters: params,
        learningRate: 1e-3,
        switchBlockEvery: 3,
        clipGradNorm: 1,
        verbose: 0,
      },
      backend,
    );
    const activeBytes: number[] = [];
    for (let step = 0; step < 24; step++) {
      for (const name of optimizer.trainableNames) {
        const key = `${name}@${step}`;
        if (!grads.has(key)) grads.set(key, [random(init.get(name)!.length, 1)]);
        backend.accumulateGradient(name, grads.get(key)![0]!);
      }
      activeBytes.push(backend.memory().byKind?.optimizerState ?? -1);
      optimizer.step();
    }
    const weights = new Map(shapes.map(([name]) => [name, backend.weight(name)]));
    backend.dispose();
    return { weights, activeBytes, leftover: device.memory().inUse - before };
  };
  const onGpu = run(gpu);
  const onCpu = run(cpu);
  for (const [name] of shapes)
    record(
      'CudaBlockBackend',
      `24 steps, K = 3, clip 1: ${name}`,
      onGpu.weights.get(name)!,
      onCpu.weights.get(name)!,
      THRESHOLD.bfloat16,
      1e-2,
    );
  const layer = 256 * 256 + 256 * 688 + 256;
  const stateOk = onGpu.activeBytes.every((b) => b === 8 * layer);
  checks.push({
    kernel: 'CudaBlockBackend',
    case: 'Adam state held = one layer at every step',
    maxRelError: stateOk ? 0 : 1,
    threshold: 0,
    ok: stateOk,
  });
  const leftover = onGpu.leftover;
  checks.push({
    kernel: 'CudaBlockBackend',
    case: 'all memory returned after dispose',
    maxRelError: leftover,
    threshold: 0,
    ok: leftover === 0,
  });
}

function time(device: Device, reps: number, f: () => void): number {
  f();
  device.synchronize();
  const start = performance.now();
  for (let i = 0; i < reps; i++) f();
  device.synchronize();
  return (performance.now() - start) / 1000 / reps;
}

function timingChecks(gpu: Device, quick: boolean, tiny: boolean): void {
  // Ceiling 1: device-to-device copy bandwidth (bytes read + written).
  const bytes = tiny ? 16 << 20 : quick ? 256 << 20 : 2 << 30;
  const src = gpu.empty([bytes / 4], 'float32').fill(1);
  const dst = gpu.empty([bytes / 4], 'float32');
  const copySeconds = time(gpu, 20, () => gpu.copy(dst, src));
  const copyBandwidth = (2 * bytes) / copySeconds / 1e9;
  src.free();
  dst.free();
  gpu.emptyCache();
  timings.push({
    what: 'device-to-device copy',
    size: `${bytes >> 20} MiB`,
    'GB/s': copyBandwidth.toFixed(0),
  });
  // Fused AdamW on a bf16 weight with fp32 master, fp32 grad: reads 16 B/element, writes 14 B/element.
  for (const n of tiny ? [1 << 20] : quick ? [1 << 24] : [1 << 24, 1 << 27]) {
    const weight = gpu.empty([n], 'bfloat16', 'weights').fill(0.5);
    const master = gpu.castTo(weight, 'float32', 'masters');
    const grad = gpu.empty([n], 'float32', 'gradients').fill(0.01);
    const m = gpu.zeros([n], 'float32', 'optimizerState');
    const v = gpu.zeros([n], 'float32', 'optimizerState');
    let step = 1;
    const seconds = time(gpu, 20, () =>
      gpu.adamw(master, weight, grad, m, v, {
        lr: 1e-5,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weightDecay: 0,
        step: step++,
        gradScale: 1,
      }),
    );
    const bandwidth = (30 * n) / seconds / 1e9;
    timings.push({
      what: 'fused AdamW (bf16 weight, fp32 master/grad/m/v)',
      size: `${n / 2 ** 20}M elements`,
      'GB/s': bandwidth.toFixed(0),
      'of copy bandwidth': `${((100 * bandwidth) / copyBandwidth).toFixed(0)}%`,
      ms: (seconds * 1e3).toFixed(3),
    });
    for (const t of [weight, master, grad, m, v]) t.free();
  }
  gpu.emptyCache();
  // Ceiling 2: cuBLAS bf16 GEMM at a large square shape (the steps' own GEMMs: device-check-gemms.ts).
  const gemmShapes: Array<[string, number, number, number]> = tiny
    ? [['square 128', 128, 128, 128]]
    : quick
      ? [['square 4096', 4096, 4096, 4096]]
      : [['square 8192 (ceiling)', 8192, 8192, 8192]];
  let ceiling = 0;
  for (const [label, m, n, k] of gemmShapes) {
    const a = gpu.empty([m * k], 'bfloat16', 'activations').fill(0.01);
    const b = gpu.empty([k * n], 'bfloat16', 'weights').fill(0.01);
    const c = gpu.empty([m * n], 'bfloat16', 'activations');
    const seconds = time(gpu, tiny ? 1 : 10, () => gpu.gemm(a, b, c, { m, n, k, transB: true }));
    const tflops = (2 * m * n * k) / seconds / 1e12;
    ceiling ||= tflops;
    timings.push({
      what: `bf16 GEMM ${label}`,
      size: `${m}x${n}x${k}`,
      'TFLOP/s': tflops.toFixed(0),
      'of ceiling': `${((100 * tflops) / ceiling).toFixed(0)}%`,
    });
    for (const t of [a, b, c]) t.free();
  }
  gpu.emptyCache();
}

function main(): number {
  const status = Device.cudaStatus();
  if (status.devices === 0 && !flags['dry-run']) {
    console.error(`badam-cuda-check: no GPU to check: ${status.reason}`);
    return 2;
  }
  const gpu = flags['dry-run'] ? Device.cpu() : Device.cuda();
  if (flags['dry-run']) console.log('dry run: the CPU device stands in for the GPU');
  const cpu = Device.cpu();
  const started = Date.now();
  console.log(
    `device: ${gpu.description.name} (sm_${gpu.description.computeCapability.replace('.', '')}, ${(gpu.description.totalMemory / 2 ** 30).toFixed(0)} GiB, ${gpu.description.multiprocessors} SMs), ${gpu.description.gemmLibrary}`,
  );
  kernelChecks(gpu, cpu, flags.quick);
  const llama = {
    gpu,
    cpu,
    quick: flags.quick,
    tiny: flags['dry-run'],
    compare,
    random,
    checks,
    timings,
    time,
  };
  llamaChecks(llama);
  backendCheck(gpu, cpu);
  timingChecks(gpu, flags.quick, flags['dry-run']);
  stepGemmTimings({ gpu, tiny: flags['dry-run'], timings, time });
  llamaTimings(llama);
  const failed = checks.filter((c) => !c.ok);
  for (const c of checks)
    console.log(
      `${c.ok ? 'ok  ' : 'FAIL'} ${c.kernel.padEnd(16)} ${c.case.padEnd(60)} max rel err ${c.maxRelError.toExponential(2)} (<= ${c.threshold.toExponential(1)})`,
    );
  for (const t of timings)
    console.log(
      Object.entries(t)
        .map(([k, v]) => `${k}: ${v}`)
        .join(' | '),
    );
  console.log(
    `${checks.length - failed.length}/${checks.length} checks passed in ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
  if (flags.out) {
    writeFileSync(
      flags.out,
      `${JSON.stringify({ date: new Date().toISOString(), device: gpu.description, checks, timings }, null, 2)}\n`,
    );
  }
  return failed.length === 0 ? 0 : 1;
}

process.exitCode = main();
