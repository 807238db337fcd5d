/**
 * SGEMM throughput of @badam/native on the matrix shapes of a Llama layer (1024 tokens, hidden 512, MLP
 * 1376, vocab 8192), with one thread and with all, against the plain reference loop. For the comparison
 * with tfjs's own matMul see `pnpm --filter @badam/tfjs bench:matmul`.
 *
 *   pnpm --filter @badam/native bench
 */
import { cpus } from 'node:os';
import { type GemmShape, gemmKernel, gemmThreads, sgemm, sgemmReference } from '../src/index.js';

const SHAPES: Array<GemmShape & { label: string }> = [
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

function secondsPerCall(f: () => void, reps: number): number {
  f();
  const start = performance.now();
  for (let i = 0; i < reps; i++) f();
  return (performance.now() - start) / 1000 / reps;
}

const all = gemmThreads();
console.log(`${cpus()[0]?.model ?? 'cpu'}, kernel ${gemmKernel()}, ${new Date().toISOString().slice(0, 10)}`);
console.log(`| product | 1 thread GFLOP/s | ${all} threads GFLOP/s | reference loop GFLOP/s |`);
console.log('| --- | --- | --- | --- |');
for (const s of SHAPES) {
  const a = fill(s.m * s.k);
  const b = fill(s.k * s.n);
  const c = new Float32Array(s.m * s.n);
  const gflops = (seconds: number) => ((2 * s.m * s.n * s.k) / seconds / 1e9).toFixed(1);
  gemmThreads(1);
  const one = secondsPerCall(() => sgemm(a, b, c, s), 10);
  gemmThreads(all);
  const many = secondsPerCall(() => sgemm(a, b, c, s), 10);
  const reference = secondsPerCall(() => sgemmReference(a, b, c, s), 1);
  console.log(`| ${s.label} | ${gflops(one)} | ${gflops(many)} | ${gflops(reference)} |`);
}
