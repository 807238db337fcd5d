/**
 * SGEMM throughput of @badam/native against tfjs's own matMul on the wasm backend, on the matrix shapes of
 * a Llama layer's forward and backward (tokens x hidden x intermediate), in the same process.
 *
 *   pnpm --filter @badam/tfjs bench:matmul
 */
import { cpus } from 'node:os';
import { gemmKernel, gemmThreads, sgemm } from '@badam/native';
import * as tf from '@tensorflow/tfjs';
import { useTfjsBackend } from '../src/index.js';

const SHAPES = [
  { label: 'q_proj fwd (1024 x 512 x 512)', m: 1024, n: 512, k: 512 },
  { label: 'gate_proj fwd (1024 x 1376 x 512)', m: 1024, n: 1376, k: 512 },
  { label: 'down_proj dW (1376 x 512 x 1024, A^T)', m: 1376, n: 512, k: 1024, transA: true },
  { label: 'lm_head fwd (1024 x 8192 x 512, B^T)', m: 1024, n: 8192, k: 512, transB: true },
];

function fill(n: number): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = Math.sin(i * 0.37);
  return x;
}

async function main(): Promise<void> {
  await useTfjsBackend('wasm');
  console.log(
    `${cpus()[0]?.model ?? 'cpu'}, kernel ${gemmKernel()}, ${gemmThreads()} threads, ${new Date().toISOString().slice(0, 10)}`,
  );
  console.log('| product | @badam/native GFLOP/s | tfjs wasm GFLOP/s | ratio |');
  console.log('| --- | --- | --- | --- |');
  for (const s of SHAPES) {
    const a = fill(s.m * s.k);
    const b = fill(s.k * s.n);
    const c = new Float32Array(s.m * s.n);
    const flops = 2 * s.m * s.n * s.k;
    const time = (f: () => void, reps: number) => {
      f();
      const start = performance.now();
      for (let i = 0; i < reps; i++) f();
      return (performance.now() - start) / 1000 / reps;
    };
    const native = time(() => sgemm(a, b, c, s), 10);
    const ta = tf.tensor2d(a, s.transA ? [s.k, s.m] : [s.m, s.k]);
    const tb = tf.tensor2d(b, s.transB ? [s.n, s.k] : [s.k, s.n]);
    const wasm = time(() => tf.tidy(() => tf.matMul(ta, tb, s.transA, s.transB).dataSync()), 2);
    tf.dispose([ta, tb]);
    console.log(
      `| ${s.label} | ${(flops / native / 1e9).toFixed(1)} | ${(flops / wasm / 1e9).toFixed(1)} | ${(wasm / native).toFixed(1)}x |`,
    );
  }
}

await main();
