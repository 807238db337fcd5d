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

async function main(): Promise<void> {
  const backend = await useTfjsBackend(values.backend as TfjsBackendChoice);
  const model = createTinyLlama(CONFIG, 1);
  const batches = Array.from({ length: CONFIG.layers + 1 }, (_, i) =>
    randomTokens(batch, seq, CONFIG.vocab, i + 1),
  );
  const all = model.named.map(([, v]) => v);
  const weights = all.reduce((s, v) => s + 4 * v.size, 0);
  const initial = model.named.map(([, v]) => tf.clone(v));
  const reset = () => model.named.forEach(([, v], i) => v.assign(initial[i]!));

  const timeSteps = (step: (tokens: tf.Tensor2D) => void): number[] => {
    step(batches[0]!); // warm-up (kernels, first allocations)
    return batches.slice(1).map((tokens) => {
      const start = performance.now();
      step(tokens);
      return performance.now() - start;
    });
  };
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

  // Speed, interleaved runs of the same batches: full AdamW, then BAdam (K = 1, ascending).
  const rows: string[] = [];
  const speed: Record<string, number> = {};
  for (const round of [1, 2]) {
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
  const adamMs = (speed.adam1! + speed.adam2!) / 2;
  const badamMs = (speed.badam1! + speed.badam2!) / 2;
  const tokensPerStep = batch * seq;

  // Memory: a steady-state step of each, peak by tf.profile.
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
  const tokens = batches[1]!;
  const fullAdamW = await memoryOf(() => {
    const o = new AdamW({ learningRate: 1e-4, weightDecay: 0 });
    return { step: () => o.minimize(() => model.loss(tokens), false, all), dispose: () => o.dispose() };
  });
  const fullTfAdam = await memoryOf(() => {
    const o = tf.train.adam(1e-4);
    return { step: () => o.minimize(() => model.loss(tokens), false, all), dispose: () => o.dispose() };
  });
  for (const [, v] of model.named) v.trainable = true;
  const blockAdamW = await memoryOf(() => {
    const o = new BlockOptimizer({
      baseOptimizer: new AdamW({ learningRate: 1e-4, weightDecay: 0 }),
      namedParameters: model.named,
      switchBlockEvery: -1,
      verbose: 0,
    });
    return { step: () => o.minimize(() => model.loss(tokens)), dispose: () => o.dispose() };
  });
  for (const [, v] of model.named) v.trainable = true;
  const blockTfAdam = await memoryOf(() => {
    const o = new BlockOptimizer({
      baseOptimizer: tf.train.adam(1e-4),
      namedParameters: model.named,
      switchBlockEvery: -1,
      verbose: 0,
    });
    return { step: () => o.minimize(() => model.loss(tokens)), dispose: () => o.dispose() };
  });
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
  const estimatedActivations = estimateActivationBytes(architecture, {
    batchSize: batch,
    seqLength: seq,
    dtype: 'float32',
    attention: 'eager',
  });

  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  rows.push(
    `Machine: ${cpu}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB; Node ${process.version}; tfjs ${tf.version.tfjs} on ${backend}; ${new Date().toISOString().slice(0, 10)}.`,
    `Model: Llama-shaped, ${CONFIG.layers} layers, hidden ${CONFIG.hidden}, MLP ${CONFIG.intermediate}, vocab ${CONFIG.vocab}, ${(weights / 4 / 1e6).toFixed(2)}M parameters (${MB(weights)} MB fp32); batch ${batch} x ${seq} tokens.`,
    '',
    '| step time (mean of one block epoch, 2 interleaved rounds) | ms / step | tokens / s |',
    '| --- | --- | --- |',
    `| full AdamW | ${adamMs.toFixed(0)} | ${((1000 * tokensPerStep) / adamMs).toFixed(0)} |`,
    `| BAdam (AdamW base, K = 1, ascending) | ${badamMs.toFixed(0)} | ${((1000 * tokensPerStep) / badamMs).toFixed(0)} |`,
    `| ratio BAdam / Adam | ${(badamMs / adamMs).toFixed(2)} | |`,
    `(rounds: Adam ${speed.adam1!.toFixed(0)} / ${speed.adam2!.toFixed(0)} ms, BAdam ${speed.badam1!.toFixed(0)} / ${speed.badam2!.toFixed(0)} ms)`,
    '',
    '| peak tf.memory() of a steady-state step | peak MB | held between steps MB (state) |',
    '| --- | --- | --- |',
    `| full AdamW (ours) | ${MB(fullAdamW.peak)} | ${MB(fullAdamW.heldAfterStep)} |`,
    `| full tf.train.adam | ${MB(fullTfAdam.peak)} | ${MB(fullTfAdam.heldAfterStep)} |`,
    `| BAdam, AdamW base, lowest block | ${MB(blockAdamW.peak)} | ${MB(blockAdamW.heldAfterStep)} |`,
    `| BAdam, tf.train.adam base, lowest block | ${MB(blockTfAdam.peak)} | ${MB(blockTfAdam.heldAfterStep)} |`,
    '',
    `core's closed-form activation estimate for this workload: ${MB(estimatedActivations)} MB (fp32, eager attention).`,
  );
  console.log(rows.join('\n'));
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
