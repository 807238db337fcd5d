/**
 * CPU speed benchmark against PyTorch: a Llama trained on this machine's CPU by @badam/cuda's CPU engine (bf16
 * weights, fp32 active block), by @badam/tfjs (wasm backend with @badam/native's SGEMM) and by the PyTorch peer
 * `../shared/bench/torch_cpu_llama.py` (fp32, run twice: with the environment's OPENBLAS_CORETYPE and
 * without it, and the faster is the reference), same modes, same step counts, each in its own process so
 * peak RSS is its own. Prints a markdown table of ratios and, with the engine, the share of its step in
 * GEMM, attention and the rest and its GEMM rate against @badam/native's SGEMM on the same products.
 *
 *   pnpm --filter @badam/llama-alpaca bench                                   # bench-34m: engine, tfjs, PyTorch
 *   pnpm --filter @badam/llama-alpaca bench -- --configs smollm-135m          # real shapes: engine and PyTorch
 *   pnpm --filter @badam/llama-alpaca bench -- --configs tinyllama-1.1b --modes badam,adam
 *   pnpm --filter @badam/llama-alpaca bench -- --checkpointing                # also with gradient checkpointing
 *   pnpm --filter @badam/llama-alpaca bench -- --runners tfjs --modes lora --pure-wasm
 *   BADAM_TORCH_BENCH=/path/torch_cpu_llama.py PYTHON=/usr/bin/python3 ...  # where the PyTorch peer lives
 *
 * Configurations (the peer's CONFIGS): `bench-34m` (vocab 8192, hidden 512, MLP 1376, 8 layers, 8 heads,
 * 4 x 256 tokens), and the shipped config.json of `smollm-135m` (4 x 256), `qwen2.5-0.5b` (2 x 256) and
 * `tinyllama-1.1b` (2 x 256), with random weights. Modes, as in the peer: `badam` (BAdam, K = 1, ascending),
 * `adam` (full AdamW), `lora` (rank 8 on every linear layer but lm_head; tfjs and PyTorch only). Steps:
 * 10 (first 2 untimed) for the first two configurations, 4 (first 1 untimed) for the larger two.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type LlamaConfig, llamaConfigFromHf } from '@badam/core';
import { shippedLlamaConfig } from '@badam/models';
import { type EngineMeasurement, runEngine } from './cpu-speed-engine.js';

const BENCH_34M = { vocab: 8192, dim: 512, inter: 1376, layers: 8, heads: 8, seq: 256, batch: 4 };

/** A workload: the model's config.json, the peer's CONFIG name, tokens per step and steps. */
interface Workload {
  readonly hf: Record<string, unknown>;
  readonly batch: number;
  readonly seq: number;
  readonly steps: number;
  readonly warm: number;
}

const WORKLOADS: Readonly<Record<string, Workload>> = {
  'bench-34m': {
    hf: {
      model_type: 'llama',
      vocab_size: BENCH_34M.vocab,
      hidden_size: BENCH_34M.dim,
      intermediate_size: BENCH_34M.inter,
      num_hidden_layers: BENCH_34M.layers,
      num_attention_heads: BENCH_34M.heads,
      num_key_value_heads: BENCH_34M.heads,
      max_position_embeddings: BENCH_34M.seq,
      rms_norm_eps: 1e-5,
      tie_word_embeddings: false,
    },
    batch: 4,
    seq: 256,
    steps: 10,
    warm: 2,
  },
  'smollm-135m': { hf: shippedLlamaConfig('smollm-135m')!, batch: 4, seq: 256, steps: 10, warm: 2 },
  'qwen2.5-0.5b': { hf: shippedLlamaConfig('qwen2.5-0.5b')!, batch: 2, seq: 256, steps: 4, warm: 1 },
  'tinyllama-1.1b': { hf: shippedLlamaConfig('tinyllama-1.1b')!, batch: 2, seq: 256, steps: 4, warm: 1 },
};

type Measurement = EngineMeasurement & {
  peak_tensor_mib?: number;
  blas?: string;
  openblas_coretype?: string;
};

async function tfjsWorker(
  mode: string,
  backend: 'wasm' | 'wasm-native',
  steps: number,
  warm: number,
  checkpointing: boolean,
): Promise<void> {
  await import('@tensorflow/tfjs');
  const tf = await import('@tensorflow/tfjs-core');
  const { useNativeMatMul, useTfjsBackend, AdamW, BlockOptimizer, trackPeakMemory } = await import(
    '@badam/tfjs'
  );
  const { LlamaForCausalLM } = await import('@badam/models');
  const { isLoraParameter, SeededRandom } = await import('@badam/core');
  await useTfjsBackend('wasm');
  if (backend === 'wasm-native') await useNativeMatMul();
  const config = llamaConfigFromHf(WORKLOADS['bench-34m']!.hf);
  const model = new LlamaForCausalLM(config, { seed: 0 });
  model.gradientCheckpointing = checkpointing;
  const rng = SeededRandom.fromSeed(0);
  const ids = Array.from({ length: BENCH_34M.batch }, () =>
    Array.from({ length: BENCH_34M.seq }, () => rng.nextInt(BENCH_34M.vocab)),
  );
  const inputIds = tf.tensor2d(ids, undefined, 'int32');
  const batch = { inputIds, labels: inputIds };
  let step: () => void;
  if (mode === 'badam') {
    const optimizer = new BlockOptimizer({
      baseOptimizer: new AdamW({ learningRate: 1e-4, weightDecay: 0 }),
      namedParameters: model.namedParameters,
      switchBlockEvery: 1,
      switchMode: 'ascending',
      verbose: 0,
    });
    step = () => optimizer.minimize(() => model.loss(batch));
  } else {
    if (mode === 'lora') {
      model.addLora({ rank: 8, alpha: 8, dropout: 0, targetModules: 'all' }, 0);
      for (const [name, v] of model.namedParameters) v.trainable = isLoraParameter(name);
    }
    const trainable = model.namedParameters.filter(([, v]) => v.trainable).map(([, v]) => v);
    const optimizer = new AdamW({ learningRate: 1e-4, weightDecay: 0 });
    step = () => {
      optimizer.minimize(() => model.loss(batch), false, trainable);
    };
  }
  let started = 0;
  const peak = trackPeakMemory();
  for (let s = 0; s < steps; s++) {
    if (s === warm) started = performance.now();
    step();
  }
  await tf.ready();
  const stepSeconds = (performance.now() - started) / 1000 / (steps - warm);
  peak.stop();
  const result: Measurement = {
    runner: `tfjs ${backend === 'wasm-native' ? 'wasm + native' : 'wasm'} fp32${checkpointing ? ', gradient checkpointing' : ''}`,
    mode,
    step_s: Number(stepSeconds.toFixed(3)),
    tok_s: Number(((BENCH_34M.batch * BENCH_34M.seq) / stepSeconds).toFixed(1)),
    max_rss_mib: Number((process.resourceUsage().maxRSS / 1024).toFixed(1)),
    peak_tensor_mib: Number((peak.peakBytes() / 2 ** 20).toFixed(1)),
    peak_allocator_mib: 0,
    params_m: Number((model.parameterCount / 1e6).toFixed(2)),
  };
  console.log(`RESULT ${JSON.stringify(result)}`);
}

function parseResult(output: string): Measurement | undefined {
  const line = output.split('\n').find((l) => l.startsWith('RESULT '));
  return line === undefined ? undefined : (JSON.parse(line.slice(7)) as Measurement);
}

/** The monorepo root (the folder with pnpm-workspace.yaml) above this script, compiled or not. */
function workspaceRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'pnpm-workspace.yaml')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

interface Plan {
  readonly configs: string[];
  readonly runners: string[];
  readonly modes: string[];
  readonly pureWasm: boolean;
  readonly checkpointing: boolean;
  readonly profile: boolean;
}

/** The environment without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE: OpenBLAS picks its own kernel. */
function withoutCoreType(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const copy = { ...env };
  delete copy.OPENBLAS_CORETYPE;
  delete copy.OPENBLAS_L2_SIZE;
  return copy;
}

function orchestrate(plan: Plan): void {
  const peer = resolve(
    process.env.BADAM_TORCH_BENCH ?? join(workspaceRoot(), '..', 'shared', 'bench', 'torch_cpu_llama.py'),
  );
  const python = process.env.PYTHON ?? '/usr/bin/python3';
  const threads = process.env.BADAM_THREADS ?? String(Math.min(cpus().length, 2));
  const self = fileURLToPath(import.meta.url);
  const run = (label: string, command: string, args: string[], env: NodeJS.ProcessEnv) => {
    process.stderr.write(`running ${label} ...\n`);
    const child = spawnSync(command, args, {
      encoding: 'utf8',
      env: { ...env, THREADS: threads, BADAM_THREADS: threads },
      maxBuffer: 1 << 24,
    });
    const result = parseResult(child.stdout ?? '');
    if (result === undefined) {
      process.stderr.write(
        `  ${label} failed (exit ${child.status}): ${(child.stderr ?? '').split('\n').slice(-5).join('\n')}\n`,
      );
      return undefined;
    }
    process.stderr.write(
      `  ${result.step_s} s/step, ${result.tok_s} tokens/s, max RSS ${result.max_rss_mib} MiB\n`,
    );
    return result;
  };
  const haveTorch =
    plan.runners.includes('torch') &&
    existsSync(peer) &&
    spawnSync(python, ['-c', 'import torch'], { encoding: 'utf8' }).status === 0;
  if (plan.runners.includes('torch') && !haveTorch)
    process.stderr.write(`PyTorch peer not runnable (${python}, ${peer}): ours only\n`);
  const table: string[] = [
    `${threads} threads, ${cpus()[0]?.model ?? 'cpu'}; the PyTorch reference is the faster of its two OpenBLAS runs`,
    '',
    '| config | mode | runner | s/step | tokens/s | max RSS (MiB) | tokens/s vs PyTorch | RSS vs PyTorch |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  const notes: string[] = [];
  for (const configName of plan.configs) {
    const w = WORKLOADS[configName]!;
    const stepArgs = ['--steps', String(w.steps), '--warm', String(w.warm)];
    for (const mode of plan.modes) {
      const rows: Measurement[] = [];
      let torch: Measurement | undefined;
      if (haveTorch) {
        const peerEnv = { ...process.env, CONFIG: configName, STEPS: String(w.steps), WARM: String(w.warm) };
        const asIs = run(`PyTorch ${configName} ${mode}`, python, [peer, mode], peerEnv);
        const own = run(
          `PyTorch ${configName} ${mode}, own OpenBLAS kernel`,
          python,
          [peer, mode],
          withoutCoreType(peerEnv),
        );
        for (const [r, how] of [
          [asIs, `OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE ?? 'unset'}`],
          [own, 'its own kernel'],
        ] as const) {
          if (!r) continue;
          r.runner = `PyTorch fp32, OpenBLAS ${how}`;
          rows.push(r);
          if (torch === undefined || r.tok_s > torch.tok_s) torch = r;
        }
      }
      if (plan.runners.includes('engine') && mode !== 'lora') {
        for (const checkpointing of plan.checkpointing ? [false, true] : [false]) {
          const r = run(
            `engine ${configName} ${mode}${checkpointing ? ' checkpointing' : ''}`,
            process.execPath,
            [
              self,
              '--worker',
              'engine',
              '--config',
              configName,
              '--mode',
              mode,
              ...stepArgs,
              ...(checkpointing ? ['--checkpointing'] : []),
              ...(plan.profile ? ['--profile'] : []),
            ],
            process.env,
          );
          if (!r) continue;
          rows.push(r);
          if (r.share)
            notes.push(
              `${configName} ${mode}${checkpointing ? ' (checkpointing)' : ''}: step CPU time ${pct(r.share.gemm)} GEMM, ${pct(r.share.attention)} attention, ${pct(r.share.rest)} the rest; ${r.gemm_gflop} GFLOP of GEMMs per step = ${r.step_gflops} GFLOP/s of step, ${pct(r.step_gflops! / r.sgemm_gflops!)} of @badam/native's SGEMM on the same products (${r.sgemm_gflops} GFLOP/s); allocator peak ${r.peak_allocator_mib} MiB`,
            );
        }
      }
      if (plan.runners.includes('tfjs') && configName === 'bench-34m') {
        const variants: Array<[string, string[]]> = [['wasm-native', []]];
        if (plan.checkpointing) variants.push(['wasm-native', ['--checkpointing']]);
        if (plan.pureWasm) variants.push(['wasm', ['--steps', '3', '--warm', '1']]);
        for (const [backend, extra] of variants) {
          const r = run(
            `tfjs ${backend} ${mode} ${extra.join(' ')}`,
            process.execPath,
            [self, '--worker', 'tfjs', '--mode', mode, '--backend', backend, ...stepArgs, ...extra],
            process.env,
          );
          if (r) rows.push(r);
        }
      }
      for (const r of rows) {
        const speed = torch ? `${(r.tok_s / torch.tok_s).toFixed(2)}x` : 'n/a';
        const rss = torch ? `${(r.max_rss_mib / torch.max_rss_mib).toFixed(2)}x` : 'n/a';
        table.push(
          `| ${configName} | ${mode} | ${r.runner} | ${r.step_s} | ${r.tok_s} | ${r.max_rss_mib} | ${speed} | ${rss} |`,
        );
      }
    }
  }
  console.log(table.join('\n'));
  if (notes.length > 0) console.log(`\n${notes.map((n) => `- ${n}`).join('\n')}`);
}

const pct = (x: number) => `${(100 * x).toFixed(0)}%`;

const { values } = parseArgs({
  options: {
    worker: { type: 'string' },
    config: { type: 'string', default: 'bench-34m' },
    mode: { type: 'string', default: 'badam' },
    backend: { type: 'string', default: 'wasm-native' },
    steps: { type: 'string' },
    warm: { type: 'string' },
    configs: { type: 'string', default: 'bench-34m' },
    runners: { type: 'string', default: 'engine,torch,tfjs' },
    modes: { type: 'string', default: 'badam' },
    'pure-wasm': { type: 'boolean', default: false },
    checkpointing: { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    'no-profile': { type: 'boolean', default: false },
  },
});
const configs = values.configs.split(',');
for (const c of [...configs, values.config])
  if (WORKLOADS[c] === undefined)
    throw new Error(`--configs ${c}: expected one of ${Object.keys(WORKLOADS).join(', ')}`);
if (values.worker === 'engine') {
  const w = WORKLOADS[values.config]!;
  const config: LlamaConfig = llamaConfigFromHf(w.hf, values.config);
  const result = runEngine({
    config,
    configName: values.config,
    mode: values.mode as 'badam' | 'adam',
    batch: w.batch,
    seq: w.seq,
    steps: Number(values.steps ?? w.steps),
    warm: Number(values.warm ?? w.warm),
    checkpointing: values.checkpointing,
    profile: values.profile,
  });
  console.log(`RESULT ${JSON.stringify(result)}`);
} else if (values.worker === 'tfjs') {
  const w = WORKLOADS['bench-34m']!;
  await tfjsWorker(
    values.mode,
    values.backend as 'wasm' | 'wasm-native',
    Number(values.steps ?? w.steps),
    Number(values.warm ?? w.warm),
    values.checkpointing,
  );
} else {
  orchestrate({
    configs,
    runners: values.runners.split(','),
    modes: values.modes.split(','),
    pureWasm: values['pure-wasm'],
    checkpointing: values.checkpointing,
    profile: !values['no-profile'],
  });
}
