/**
 * CPU speed benchmark against PyTorch: the workload of `../shared/bench/torch_cpu_llama.py` (a 34M-parameter
 * Llama: vocab 8192, hidden 512, MLP 1376, 8 layers, 8 heads, sequence 256, batch 4) trained on this
 * machine's CPU by @badam/tfjs (wasm backend with @badam/native's SGEMM) and by PyTorch, same modes, same
 * step counts, each in its own process so peak RSS is its own. Prints a markdown table of ratios.
 *
 *   pnpm --filter @badam/llama-alpaca bench                      # badam, adam and lora, tfjs and PyTorch
 *   pnpm --filter @badam/llama-alpaca bench -- --modes badam --pure-wasm   # also tfjs-wasm without native
 *   pnpm --filter @badam/llama-alpaca bench -- --checkpointing              # also with gradient checkpointing
 *   BADAM_TORCH_BENCH=/path/torch_cpu_llama.py PYTHON=/usr/bin/python3 ...  # where the PyTorch peer lives
 *
 * Modes, as in the peer: `badam` (BAdam, K = 1, ascending, so the 8 timed steps cover one block epoch),
 * `adam` (full AdamW), `lora` (rank 8 on every linear layer but lm_head). 10 steps, the first 2 untimed.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const WORKLOAD = { vocab: 8192, dim: 512, inter: 1376, layers: 8, heads: 8, seq: 256, batch: 4 };
const STEPS = 10;
const WARM = 2;

interface Measurement {
  runner: string;
  mode: string;
  step_s: number;
  tok_s: number;
  max_rss_mib: number;
  peak_tensor_mib?: number;
  params_m: number;
}

async function worker(
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
  const { LlamaForCausalLM, llamaConfigFromHf } = await import('@badam/models');
  const { isLoraParameter, SeededRandom } = await import('@badam/core');
  await useTfjsBackend('wasm');
  if (backend === 'wasm-native') await useNativeMatMul();
  const config = llamaConfigFromHf({
    model_type: 'llama',
    vocab_size: WORKLOAD.vocab,
    hidden_size: WORKLOAD.dim,
    intermediate_size: WORKLOAD.inter,
    num_hidden_layers: WORKLOAD.layers,
    num_attention_heads: WORKLOAD.heads,
    num_key_value_heads: WORKLOAD.heads,
    max_position_embeddings: WORKLOAD.seq,
    rms_norm_eps: 1e-5,
    tie_word_embeddings: false,
  });
  const model = new LlamaForCausalLM(config, { seed: 0 });
  model.gradientCheckpointing = checkpointing;
  const rng = SeededRandom.fromSeed(0);
  const ids = Array.from({ length: WORKLOAD.batch }, () =>
    Array.from({ length: WORKLOAD.seq }, () => rng.nextInt(WORKLOAD.vocab)),
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
    runner: `${backend === 'wasm-native' ? 'tfjs wasm + native' : 'tfjs wasm'}${checkpointing ? ', gradient checkpointing' : ''}`,
    mode,
    step_s: Number(stepSeconds.toFixed(3)),
    tok_s: Number(((WORKLOAD.batch * WORKLOAD.seq) / stepSeconds).toFixed(1)),
    max_rss_mib: Number((process.resourceUsage().maxRSS / 1024).toFixed(1)),
    peak_tensor_mib: Number((peak.peakBytes() / 2 ** 20).toFixed(1)),
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

function orchestrate(modes: string[], pureWasm: boolean, checkpointing: boolean): void {
  const peer = resolve(
    process.env.BADAM_TORCH_BENCH ?? join(workspaceRoot(), '..', 'shared', 'bench', 'torch_cpu_llama.py'),
  );
  const python = process.env.PYTHON ?? '/usr/bin/python3';
  const threads = process.env.BADAM_THREADS ?? String(Math.min(cpus().length, 2));
  const rows: Measurement[] = [];
  const run = (label: string, command: string, args: string[]) => {
    process.stderr.write(`running ${label} ...\n`);
    const child = spawnSync(command, args, {
      encoding: 'utf8',
      env: { ...process.env, THREADS: threads, BADAM_THREADS: threads },
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
    rows.push(result);
    return result;
  };
  const self = fileURLToPath(import.meta.url);
  const haveTorch =
    existsSync(peer) && spawnSync(python, ['-c', 'import torch'], { encoding: 'utf8' }).status === 0;
  if (!haveTorch) process.stderr.write(`PyTorch peer not runnable (${python}, ${peer}): tfjs only\n`);
  const table: string[] = [
    `workload: ${JSON.stringify(WORKLOAD)}, ${STEPS} steps (first ${WARM} untimed), ${threads} threads, ${cpus()[0]?.model ?? 'cpu'}`,
    '',
    '| mode | runner | s/step | tokens/s | max RSS (MiB) | peak tfjs tensors (MiB) | tokens/s vs PyTorch |',
    '| --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const mode of modes) {
    const torch = haveTorch ? run(`PyTorch ${mode}`, python, [peer, mode]) : undefined;
    if (torch) torch.runner = `PyTorch ${process.env.TORCH_LABEL ?? 'CPU'}`;
    const native = run(`tfjs wasm+native ${mode}`, process.execPath, [
      self,
      '--worker',
      mode,
      '--backend',
      'wasm-native',
    ]);
    const recomputing = checkpointing
      ? run(`tfjs wasm+native+checkpointing ${mode}`, process.execPath, [
          self,
          '--worker',
          mode,
          '--backend',
          'wasm-native',
          '--checkpointing',
        ])
      : undefined;
    const wasm = pureWasm
      ? run(`tfjs wasm ${mode}`, process.execPath, [
          self,
          '--worker',
          mode,
          '--backend',
          'wasm',
          '--steps',
          '3',
          '--warm',
          '1',
        ])
      : undefined;
    for (const r of [torch, native, recomputing, wasm]) {
      if (r === undefined) continue;
      const ratio = torch !== undefined ? `${(r.tok_s / torch.tok_s).toFixed(2)}x` : 'n/a';
      table.push(
        `| ${mode} | ${r.runner} | ${r.step_s} | ${r.tok_s} | ${r.max_rss_mib} | ${r.peak_tensor_mib ?? '-'} | ${ratio} |`,
      );
    }
  }
  console.log(table.join('\n'));
  console.log(`\n${JSON.stringify(rows)}`);
}

const { values } = parseArgs({
  options: {
    worker: { type: 'string' },
    backend: { type: 'string', default: 'wasm-native' },
    steps: { type: 'string', default: String(STEPS) },
    warm: { type: 'string', default: String(WARM) },
    modes: { type: 'string', default: 'badam,adam,lora' },
    'pure-wasm': { type: 'boolean', default: false },
    checkpointing: { type: 'boolean', default: false },
  },
});
if (values.worker !== undefined) {
  await worker(
    values.worker,
    values.backend as 'wasm' | 'wasm-native',
    Number(values.steps),
    Number(values.warm),
    values.checkpointing,
  );
} else {
  orchestrate(values.modes.split(','), values['pure-wasm'], values.checkpointing);
}
