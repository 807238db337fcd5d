#!/usr/bin/env node
/**
 * Multi-process BAdam on the CPU device: the step time of one process on a global batch against 2 and 3
 * ranks sharding the model ZeRO-3 style (Gloo over loopback), each with the next part's gather overlapping
 * the current part's compute and without (every gather waited for when its part starts). A Llama of width
 * 256, 4 layers, the bottom layer trained (so backward runs through every layer), a global batch of 6 x 64
 * tokens, AdamW; the machine's cores divided among the ranks (BADAM_THREADS). Prints one JSON line per run.
 *
 *   node packages/cuda/dist/bench/sharded-ranks.js [--steps 8] [--warm 2] [--ranks 2,3]
 *
 * Each run is this script again, as one process or as ranks (RANK set): the driver starts them.
 */
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BlockOptimizer, llamaConfigFromHf } from '@badam/core';
import {
  CudaBlockBackend,
  Device,
  DeviceLlama,
  type DeviceLlamaBatch,
  ProcessGroup,
  ShardedBlockBackend,
  ShardedLlama,
} from '../src/index.js';

const config = llamaConfigFromHf({
  model_type: 'llama',
  vocab_size: 1024,
  hidden_size: 256,
  intermediate_size: 688,
  num_hidden_layers: 4,
  num_attention_heads: 8,
  num_key_value_heads: 4,
  max_position_embeddings: 128,
});
const ROWS = 6;
const SEQ = 64;

/** Rows [start, end) of the step's global batch (fixed pseudo-random tokens). */
function rows(step: number, start: number, end: number): DeviceLlamaBatch {
  const n = (end - start) * SEQ;
  const ids = Int32Array.from(
    { length: n },
    (_, i) => ((step * 7919 + (start * SEQ + i) * 104729) >>> 0) % 1024,
  );
  return { batchSize: end - start, seqLen: SEQ, inputIds: ids, labels: ids.slice() };
}

function optimizerOver<T extends CudaBlockBackend | ShardedBlockBackend>(
  backend: T,
  parameters: ReadonlyArray<{
    name: string;
    shape: readonly number[];
    dtype: 'float32' | 'bfloat16' | 'float16';
  }>,
): BlockOptimizer<unknown, T> {
  return new BlockOptimizer(
    {
      baseOptimizer: { type: 'adamw', learningRate: 1e-4 },
      namedParameters: parameters.map((p) => ({ name: p.name, shape: [...p.shape], dtype: p.dtype })),
      switchBlockEvery: -1,
      verbose: 0,
    },
    backend,
  );
}

/** One process or one rank: warm-up steps, then timed steps; the median step in ms. */
async function worker(steps: number, warm: number): Promise<void> {
  const device = Device.cpu();
  const times: number[] = [];
  if (process.env.RANK === undefined) {
    const model = DeviceLlama.create(device, config, { dtype: 'bfloat16', seed: 1 });
    const backend = new CudaBlockBackend(device, model.parameters());
    const optimizer = optimizerOver(backend, model.parameters());
    for (let s = 0; s < warm + steps; s++) {
      const t0 = performance.now();
      model.lossAndGradients(rows(s, 0, ROWS), backend.trainableNames, (n) => backend.gradientOf(n));
      optimizer.step();
      if (s >= warm) times.push(performance.now() - t0);
    }
  } else {
    const rank = Number(process.env.RANK);
    const worldSize = Number(process.env.WORLD_SIZE);
    const group = ProcessGroup.open(device, { rank, worldSize, masterPort: Number(process.env.MASTER_PORT) });
    const prefetch = process.env.PREFETCH !== '0';
    const model = ShardedLlama.create(device, group, config, { dtype: 'bfloat16', seed: 1, prefetch });
    const backend = new ShardedBlockBackend(device, group, model.parameters());
    const optimizer = optimizerOver(backend, model.parameters());
    const mine = (s: number) => {
      const [a, b] = [Math.floor((rank * ROWS) / worldSize), Math.floor(((rank + 1) * ROWS) / worldSize)];
      return b > a ? rows(s, a, b) : null;
    };
    for (let s = 0; s < warm + steps; s++) {
      const t0 = performance.now();
      const { labelTokens } = model.lossAndGradients(mine(s), backend.trainableNames, (n) =>
        backend.gradientOf(n),
      );
      backend.reduceGradients(labelTokens);
      backend.addLabelTokens(group.allReduceSum(Float64Array.of(labelTokens))[0]!);
      optimizer.step();
      if (s >= warm) times.push(performance.now() - t0);
    }
    group.close();
    if (rank !== 0) return;
  }
  times.sort((a, b) => a - b);
  console.log(JSON.stringify({ step_ms: Math.round(times[Math.floor(times.length / 2)]!) }));
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/** Runs this script as `ranks` processes (0: one process, no group); resolves to rank 0's step time. */
async function launch(ranks: number, prefetch: boolean, args: string[]): Promise<number> {
  const port = await freePort();
  const self = fileURLToPath(import.meta.url);
  const threads = String(Math.max(1, Math.floor(cpus().length / Math.max(1, ranks))));
  const outputs = await Promise.all(
    Array.from({ length: Math.max(1, ranks) }, (_, rank) => {
      const env: NodeJS.ProcessEnv = { ...process.env, BADAM_THREADS: threads, WORKER: '1' };
      if (ranks > 0)
        Object.assign(env, {
          RANK: String(rank),
          WORLD_SIZE: String(ranks),
          MASTER_PORT: String(port),
          PREFETCH: prefetch ? '1' : '0',
        });
      return new Promise<string>((resolve, reject) => {
        const child = spawn(process.execPath, [self, ...args], { env, stdio: ['ignore', 'pipe', 'inherit'] });
        let out = '';
        child.stdout.on('data', (d) => {
          out += d;
        });
        child.on('exit', (code) =>
          code === 0 ? resolve(out) : reject(new Error(`rank ${rank} exited with ${code}`)),
        );
      });
    }),
  );
  return JSON.parse(outputs[0]!.trim()).step_ms as number;
}

const { values } = parseArgs({
  options: {
    steps: { type: 'string', default: '8' },
    warm: { type: 'string', default: '2' },
    ranks: { type: 'string', default: '2,3' },
  },
});
const steps = Number(values.steps);
const warm = Number(values.warm);
if (process.env.WORKER === '1') {
  await worker(steps, warm);
} else {
  const args = ['--steps', String(steps), '--warm', String(warm)];
  const one = await launch(0, true, args);
  console.log(JSON.stringify({ run: 'one process', step_ms: one, tokens: ROWS * SEQ, cores: cpus().length }));
  for (const n of values.ranks!.split(',').map(Number)) {
    const overlapped = await launch(n, true, args);
    const serial = await launch(n, false, args);
    console.log(
      JSON.stringify({
        run: `${n} ranks`,
        step_ms: overlapped,
        step_ms_without_overlap: serial,
        vs_one_process: Number((overlapped / one).toFixed(2)),
        overlap_saves: Number((1 - overlapped / serial).toFixed(3)),
      }),
    );
  }
}
