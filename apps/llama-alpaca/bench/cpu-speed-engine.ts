/**
 * The CPU speed benchmark's worker for @badam/cuda's CPU engine (`cpu-speed.ts --runners engine`): a Llama of
 * one of the benchmark's configurations, bf16 weights with Hugging Face's random initialisation drawn on the
 * device, trained with BAdam (K = 1, ascending, as the PyTorch peer) or full AdamW; prints one RESULT line.
 *
 * With `profile`, a second pass of the same steps times every device call by process CPU time (all threads)
 * and sorts it into GEMM, attention and the rest, counts the GEMMs' floating-point operations, and replays
 * the step's GEMM shapes on @badam/native's fp32 SGEMM in the same process: the step's rate against our own
 * SGEMM's on the same products.
 */
import { BlockOptimizer, type LlamaConfig, SeededRandom } from '@badam/core';
import { CudaBlockBackend, Device, DeviceLlama, type DeviceLlamaBatch, type GemmShape } from '@badam/cuda';
import { sgemm } from '@badam/native';

/** What one engine run measured (the peer's fields, and ours beside them). */
export interface EngineMeasurement {
  runner: string;
  mode: string;
  step_s: number;
  tok_s: number;
  max_rss_mib: number;
  params_m: number;
  peak_allocator_mib: number;
  /** Shares of a step's CPU time (profile pass). */
  share?: { gemm: number; attention: number; rest: number };
  /** The step's GEMM GFLOP, its GEMM GFLOP per second of step, and @badam/native's SGEMM on the same shapes. */
  gemm_gflop?: number;
  step_gflops?: number;
  sgemm_gflops?: number;
}

export interface EngineRunOptions {
  readonly config: LlamaConfig;
  readonly configName: string;
  readonly mode: 'badam' | 'adam';
  readonly batch: number;
  readonly seq: number;
  readonly steps: number;
  readonly warm: number;
  readonly checkpointing: boolean;
  readonly profile: boolean;
}

type Category = 'gemm' | 'attention' | 'rest';

/** Times every call of the device's methods by process CPU time, and records the GEMMs' shapes. */
class DeviceProfiler {
  readonly cpuMs: Record<Category, number> = { gemm: 0, attention: 0, rest: 0 };
  readonly gemms: GemmShape[] = [];
  enabled = false;

  constructor(device: Device) {
    const proto = Object.getPrototypeOf(device) as Record<string, unknown>;
    // Helpers that other methods call are left out, so that no time is counted twice.
    const nested = new Set(['constructor', 'own', 'attentionArgs', 'castTo', 'globalNorm']);
    for (const name of Object.getOwnPropertyNames(proto)) {
      const method = proto[name];
      if (nested.has(name) || typeof method !== 'function') continue;
      const category: Category =
        name === 'gemm' ? 'gemm' : name.startsWith('attention') ? 'attention' : 'rest';
      const profiler = this;
      (device as unknown as Record<string, unknown>)[name] = function (this: Device, ...args: unknown[]) {
        if (!profiler.enabled) return (method as (...a: unknown[]) => unknown).apply(this, args);
        const start = process.cpuUsage();
        try {
          return (method as (...a: unknown[]) => unknown).apply(this, args);
        } finally {
          const used = process.cpuUsage(start);
          profiler.cpuMs[category] += (used.user + used.system) / 1000;
          if (category === 'gemm') profiler.gemms.push(args[3] as GemmShape);
        }
      };
    }
  }

  reset(): void {
    this.cpuMs.gemm = this.cpuMs.attention = this.cpuMs.rest = 0;
    this.gemms.length = 0;
  }
}

const flopsOf = (g: GemmShape) => 2 * g.m * g.n * g.k;

/**
 * @badam/native's fp32 SGEMM over the given products (each distinct shape once, weighted by how often the
 * step ran it): GFLOP per second of wall time.
 */
function sgemmRate(shapes: readonly GemmShape[]): number {
  const counts = new Map<string, { shape: GemmShape; times: number }>();
  for (const g of shapes) {
    const key = `${g.m}x${g.n}x${g.k}:${g.transA ?? false}:${g.transB ?? false}`;
    const seen = counts.get(key);
    if (seen) seen.times++;
    else counts.set(key, { shape: g, times: 1 });
  }
  let flops = 0;
  let seconds = 0;
  for (const { shape, times } of counts.values()) {
    const a = new Float32Array(shape.m * shape.k).fill(0.01);
    const b = new Float32Array(shape.k * shape.n).fill(0.02);
    const c = new Float32Array(shape.m * shape.n);
    sgemm(a, b, c, shape); // warm
    const reps = Math.max(1, Math.min(times, Math.ceil(2e9 / flopsOf(shape))));
    const start = performance.now();
    for (let r = 0; r < reps; r++) sgemm(a, b, c, shape);
    const took = (performance.now() - start) / 1000 / reps;
    flops += flopsOf(shape) * times;
    seconds += took * times;
  }
  return flops / seconds / 1e9;
}

/** Runs the steps on the CPU engine and returns the measurement. */
export function runEngine(o: EngineRunOptions): EngineMeasurement {
  const device = Device.cpuEngine();
  const profiler = new DeviceProfiler(device);
  const model = DeviceLlama.createRandom(device, o.config, {
    dtype: 'bfloat16',
    seed: 0,
    gradientCheckpointing: o.checkpointing,
    maxPositions: o.seq,
  });
  const parameters = model.parameters();
  const backend = new CudaBlockBackend(device, parameters);
  const optimizer = new BlockOptimizer(
    {
      namedParameters: parameters,
      baseOptimizer: { type: 'adamw', learningRate: 1e-4, weightDecay: 0 },
      ...(o.mode === 'badam'
        ? { switchBlockEvery: 1, switchMode: 'ascending' as const }
        : { partition: 'model' as const, switchBlockEvery: -1 }),
      verbose: 0,
    },
    backend,
  );
  const rng = SeededRandom.fromSeed(0);
  const ids = Int32Array.from({ length: o.batch * o.seq }, () => rng.nextInt(o.config.vocabSize));
  const batch: DeviceLlamaBatch = { batchSize: o.batch, seqLen: o.seq, inputIds: ids, labels: ids };
  const step = () => {
    model.lossAndGradients(batch, backend.trainableNames, (name) => backend.gradientOf(name));
    optimizer.step();
  };
  let started = 0;
  for (let s = 0; s < o.steps; s++) {
    if (s === o.warm) started = performance.now();
    step();
  }
  const stepSeconds = (performance.now() - started) / 1000 / (o.steps - o.warm);
  const result: EngineMeasurement = {
    runner: `badam-ts cpu engine ${device.description.name.replace('CPU engine ', '')} bf16${o.checkpointing ? ', gradient checkpointing' : ''}`,
    mode: o.mode,
    step_s: Number(stepSeconds.toFixed(3)),
    tok_s: Number(((o.batch * o.seq) / stepSeconds).toFixed(1)),
    max_rss_mib: Number((process.resourceUsage().maxRSS / 1024).toFixed(1)),
    params_m: Number(
      (parameters.reduce((n, p) => n + p.shape.reduce((a, b) => a * b, 1), 0) / 1e6).toFixed(2),
    ),
    peak_allocator_mib: Number((device.memory().peakInUse / 2 ** 20).toFixed(1)),
  };
  if (o.profile) {
    // The same sequence of blocks again (a fresh epoch from the same start), timed call by call.
    profiler.reset();
    profiler.enabled = true;
    const timed = o.steps - o.warm;
    for (let s = 0; s < timed; s++) step();
    profiler.enabled = false;
    const total = profiler.cpuMs.gemm + profiler.cpuMs.attention + profiler.cpuMs.rest;
    const share = (x: number) => Number((x / total).toFixed(3));
    const gemmFlops = profiler.gemms.reduce((n, g) => n + flopsOf(g), 0) / timed;
    result.share = {
      gemm: share(profiler.cpuMs.gemm),
      attention: share(profiler.cpuMs.attention),
      rest: share(profiler.cpuMs.rest),
    };
    result.gemm_gflop = Number((gemmFlops / 1e9).toFixed(1));
    result.step_gflops = Number((gemmFlops / stepSeconds / 1e9).toFixed(1));
    result.sgemm_gflops = Number(sgemmRate(profiler.gemms).toFixed(1));
  }
  optimizer.dispose();
  model.dispose();
  return result;
}
