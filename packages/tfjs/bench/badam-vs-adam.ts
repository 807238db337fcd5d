/**
 * Benchmark: BAdam against full Adam on tfjs, on the Llama-shaped model of the memory test (8 layers,
 * hidden 256, 6.46M parameters). Prints markdown for docs/benchmarks.md.
 *
 *   pnpm --filter @badam/tfjs bench                 # wasm (default)
 *   pnpm --filter @badam/tfjs bench -- --backend cpu --steps 8
 *
 * Speed: mean step time over one block epoch (ascending, K = 1: every block once), after one warm-up step,
 * against full Adam over the same number of steps, same batches, in the same process.
 * Memory: peak tf.memory().numBytes of a steady-state step (tf.profile), split into parts.
 */
import { cpus, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import { type DecoderArchitecture, estimateActivationBytes } from '@badam/core';
import * as tf from '@tensorflow/tfjs';
import { AdamW, BlockOptimizer, type TfjsBackendChoice, useTfjsBackend } from '../src/index.js';
import '../test/fixtures/backends.js';
import { createTinyLlama, randomTokens } from '../test/fixtures/tiny-llama.js';

const { values } = parseArgs({
  options: {
    backend: { type: 'string', default: 'wasm' },
    batch: { type: 'string', default: '2' },
    seq: { type: 'string', default: '32' },
  },
});
const CONFIG = { vocab: 256, hidden: 256, intermediate: 688, layers: 8, heads: 4 };
const batch = Number(values.batch);
const seq = Number(values.seq);
const MB = (b: number) => (b / 1e6).toFixed(1);

/** The model and its batches, as every measurement uses them. */
interface Workload {
  readonly model: ReturnType<typeof createTinyLlama>;
  readonly batches: tf.Tensor2D[];
  /** Every variable (full Adam trains them all). */
  readonly all: tf.Variable[];
  /** fp32 bytes of the weights. */
  readonly weights: number;
  /** Puts the initial weights back. */
  reset(): void;
}

function workload(): Workload {
  const model = createTinyLlama(CONFIG, 1);
  const batches = Array.from({ length: CONFIG.layers + 1 }, (_, i) =>
    randomTokens(batch, seq, CONFIG.vocab, i + 1),
  );
  const initial = model.named.map(([, v]) => tf.clone(v));
  return {
    model,
    batches,
    all: model.named.map(([, v]) => v),
    weights: model.named.reduce((s, [, v]) => s + 4 * v.size, 0),
    reset: () => model.named.forEach(([, v], i) => v.assign(initial[i]!)),
  };
}

/** Mean step time (ms) of full AdamW and BAdam (K = 1, ascending), in two interleaved rounds. */
function measureSpeed(w: Workload): Record<'adam1' | 'adam2' | 'badam1' | 'badam2', number> {
  const { model, batches, all, reset } = w;
  const timeSteps = (step: (tokens: tf.Tensor2D) => void): number[] => {
    step(batches[0]!); // warm-up (kernels, first allocations)
    return batches.slice(1).map((tokens) => {
      const start = performance.now();
      step(tokens);
      return performance.now() - start;
    });
  };
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const speed = { adam1: 0, adam2: 0, badam1: 0, badam2: 0 };
  for (const round of [1, 2] as const) {
    reset();
    const adam = new AdamW({ learningRate: 1e-4, weightDecay: 0 });
    speed[`adam${round}`] = mean(timeSteps((tokens) => adam.minimize(() => model.loss(tokens), false, all)));
    adam.dispose();
    reset();
    for (const [, v] of model.named) v.trainable = true;
    const badam = new BlockOptimizer({
      baseOptimizer: new AdamW({ learningRate: 1e-4, weightDecay: 0 }),
      namedParameters: model.named,
      switchBlockEvery: 1,
      switchMode: 'ascending',
      verbose: 0,
    });
    speed[`badam${round}`] = mean(timeSteps((tokens) => badam.minimize(() => model.loss(tokens))));
    badam.dispose();
    for (const [, v] of model.named) v.trainable = true;
  }
  return speed;
}

/** Peak and held bytes of a steady-state step (tf.profile) of full Adam and BAdam, each with AdamW and tf.train.adam. */
async function measureMemory(w: Workload) {
  const { model, all, reset, weights } = w;
  const memoryOf = async (make: () => { step: () => void; dispose: () => void }) => {
    reset();
    const base = tf.memory().numBytes;
    const run = make();
    run.step();
    const info = await tf.profile(run.step);
    const held = tf.memory().numBytes - base;
    run.dispose();
    return { peak: info.peakBytes - base + weights, heldAfterStep: held };
  };
  const tokens = w.batches[1]!;
  const full = (make: () => tf.Optimizer) =>
    memoryOf(() => {
      const o = make();
      return { step: () => o.minimize(() => model.loss(tokens), false, all), dispose: () => o.dispose() };
    });
  const block = (base: () => tf.Optimizer) => {
    for (const [, v] of model.named) v.trainable = true;
    return memoryOf(() => {
      const o = new BlockOptimizer({
        baseOptimizer: base(),
        namedParameters: model.named,
        switchBlockEvery: -1,
        verbose: 0,
      });
      return { step: () => o.minimize(() => model.loss(tokens)), dispose: () => o.dispose() };
    });
  };
  const fullAdamW = await full(() => new AdamW({ learningRate: 1e-4, weightDecay: 0 }));
  const fullTfAdam = await full(() => tf.train.adam(1e-4));
  const blockAdamW = await block(() => new AdamW({ learningRate: 1e-4, weightDecay: 0 }));
  const blockTfAdam = await block(() => tf.train.adam(1e-4));
  return { fullAdamW, fullTfAdam, blockAdamW, blockTfAdam };
}

/** core's closed-form activation estimate for the workload (fp32, eager attention). */
function estimatedActivations(): number {
  const architecture: DecoderArchitecture = {
    kind: 'decoder',
    family: 'llama',
    vocabSize: CONFIG.vocab,
    hiddenSize: CONFIG.hidden,
    intermediateSize: CONFIG.intermediate,
    numLayers: CONFIG.layers,
    numHeads: CONFIG.heads,
    numKeyValueHeads: CONFIG.heads,
    headDim: CONFIG.hidden / CONFIG.heads,
    maxPositionEmbeddings: seq,
    tieWordEmbeddings: false,
    qkvBias: false,
    outputBias: false,
    mlpBias: false,
  };
  return estimateActivationBytes(architecture, {
    batchSize: batch,
    seqLength: seq,
    dtype: 'float32',
    attention: 'eager',
  });
}

async function main(): Promise<void> {
  const backend = await useTfjsBackend(values.backend as TfjsBackendChoice);
  const w = workload();
  const speed = measureSpeed(w);
  const adamMs = (speed.adam1 + speed.adam2) / 2;
  const badamMs = (speed.badam1 + speed.badam2) / 2;
  const tokensPerStep = batch * seq;
  const { fullAdamW, fullTfAdam, blockAdamW, blockTfAdam } = await measureMemory(w);
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  const rows = [
    `Machine: ${cpu}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB; Node ${process.version}; tfjs ${tf.version.tfjs} on ${backend}; ${new Date().toISOString().slice(0, 10)}.`,
    `Model: Llama-shaped, ${CONFIG.layers} layers, hidden ${CONFIG.hidden}, MLP ${CONFIG.intermediate}, vocab ${CONFIG.vocab}, ${(w.weights / 4 / 1e6).toFixed(2)}M parameters (${MB(w.weights)} MB fp32); batch ${batch} x ${seq} tokens.`,
    '',
    '| step time (mean of one block epoch, 2 interleaved rounds) | ms / step | tokens / s |',
    '| --- | --- | --- |',
    `| full AdamW | ${adamMs.toFixed(0)} | ${((1000 * tokensPerStep) / adamMs).toFixed(0)} |`,
    `| BAdam (AdamW base, K = 1, ascending) | ${badamMs.toFixed(0)} | ${((1000 * tokensPerStep) / badamMs).toFixed(0)} |`,
    `| ratio BAdam / Adam | ${(badamMs / adamMs).toFixed(2)} | |`,
    `(rounds: Adam ${speed.adam1.toFixed(0)} / ${speed.adam2.toFixed(0)} ms, BAdam ${speed.badam1.toFixed(0)} / ${speed.badam2.toFixed(0)} ms)`,
    '',
    '| peak tf.memory() of a steady-state step | peak MB | held between steps MB (state) |',
    '| --- | --- | --- |',
    `| full AdamW (ours) | ${MB(fullAdamW.peak)} | ${MB(fullAdamW.heldAfterStep)} |`,
    `| full tf.train.adam | ${MB(fullTfAdam.peak)} | ${MB(fullTfAdam.heldAfterStep)} |`,
    `| BAdam, AdamW base, lowest block | ${MB(blockAdamW.peak)} | ${MB(blockAdamW.heldAfterStep)} |`,
    `| BAdam, tf.train.adam base, lowest block | ${MB(blockTfAdam.peak)} | ${MB(blockTfAdam.heldAfterStep)} |`,
    '',
    `core's closed-form activation estimate for this workload: ${MB(estimatedActivations())} MB (fp32, eager attention).`,
  ];
  console.log(rows.join('\n'));
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
