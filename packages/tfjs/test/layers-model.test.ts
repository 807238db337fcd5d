import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  BlockOptimizer,
  BlockOptimizerRatio,
  blockPrefixesFromLayersModel,
  namedVariablesFromLayersModel,
} from '../src/index.js';
import { onBackend } from './fixtures/backends.js';

/**
 * A Sequential model with weights from a seed and tfjs's default layer names (dense_Dense<n>), or the
 * names given (two models then have the same parameter names).
 */
function defaultNamedModel(seed: number, names: readonly string[] = []): tf.Sequential {
  const name = (i: number) => (names[i] === undefined ? {} : { name: names[i] });
  return tf.sequential({
    layers: [
      tf.layers.dense({
        units: 6,
        inputShape: [4],
        activation: 'tanh',
        kernelInitializer: tf.initializers.glorotNormal({ seed }),
        ...name(0),
      }),
      tf.layers.dense({
        units: 6,
        activation: 'tanh',
        kernelInitializer: tf.initializers.glorotNormal({ seed: seed + 1 }),
        ...name(1),
      }),
      tf.layers.dense({
        units: 2,
        kernelInitializer: tf.initializers.glorotNormal({ seed: seed + 2 }),
        ...name(2),
      }),
    ],
  });
}

/** Model files as `tf.io` writes them (model.json + weights.bin), written atomically, and read back. */
function fileHandler(dir: string) {
  const json = join(dir, 'model.json');
  const bin = join(dir, 'weights.bin');
  const writeAtomically = (path: string, data: string | Uint8Array) => {
    writeFileSync(`${path}.tmp`, data);
    renameSync(`${path}.tmp`, path);
  };
  return {
    save: tf.io.withSaveHandler(async (artifacts) => {
      const data = artifacts.weightData!;
      const joined = Array.isArray(data) ? tf.io.concatenateArrayBuffers(data) : data;
      writeAtomically(bin, new Uint8Array(joined));
      const { weightData: _, ...rest } = artifacts;
      writeAtomically(json, JSON.stringify(rest));
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
    load: () => {
      const artifacts = JSON.parse(readFileSync(json, 'utf8')) as tf.io.ModelArtifacts;
      const bytes = readFileSync(bin);
      const weightData = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
      return tf.io.fromMemory({ ...artifacts, weightData });
    },
  };
}

const values = (model: tf.LayersModel) => model.getWeights().map((w) => Array.from(w.dataSync()));

describe('BlockOptimizer as a tf.Optimizer of LayersModels', () => {
  const dirs: string[] = [];
  beforeAll(async () => {
    await onBackend('cpu');
  });
  afterEach(() => tf.disposeVariables());
  afterAll(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it('blockPrefixesFromLayersModel gives a default-named Sequential one block per layer', async () => {
    const model = defaultNamedModel(1);
    const prefixes = blockPrefixesFromLayersModel(model);
    expect(prefixes).toEqual(model.layers.map((layer) => [`${layer.name}.`]));
    const optimizer = new BlockOptimizer({
      baseOptimizer: tf.train.adam(0.01),
      namedParameters: namedVariablesFromLayersModel(model),
      blockPrefixList: prefixes,
      switchBlockEvery: 2,
      verbose: 0,
    });
    model.compile({ optimizer, loss: 'meanSquaredError' });
    const x = tf.randomNormal([8, 4], 0, 1, 'float32', 3);
    const y = tf.randomNormal([8, 2], 0, 1, 'float32', 4);
    const trained: number[][] = [];
    for (let step = 0; step < 6; step++) {
      const before = values(model);
      await model.trainOnBatch(x, y);
      const after = values(model);
      trained.push(after.flatMap((w, i) => (w.some((v, j) => v !== before[i]![j]) ? [i] : [])));
    }
    // Weights: [kernel 0, bias 0, kernel 1, bias 1, kernel 2, bias 2]; each layer takes two steps.
    expect(trained).toEqual([
      [0, 1],
      [0, 1],
      [2, 3],
      [2, 3],
      [4, 5],
      [4, 5],
    ]);
    expect(optimizer.iterations).toBe(6);
    tf.dispose([x, y]);
  });

  it('blockPrefixesFromLayersModel refuses a prefix that would also take another layer', () => {
    const model = tf.sequential({
      layers: [
        tf.layers.dense({ units: 2, inputShape: [2], name: 'a' }),
        tf.layers.dense({ units: 2, name: 'xa' }),
      ],
    });
    expect(() => blockPrefixesFromLayersModel(model)).toThrow(/layer a.*also matches xa\.kernel/);
  });

  it('is registered with tf.serialization, and fromConfig(getConfig()) is the same optimizer', () => {
    const model = defaultNamedModel(2);
    const optimizer = new BlockOptimizer({
      baseOptimizer: tf.train.adam(0.02, 0.8, 0.99),
      namedParameters: namedVariablesFromLayersModel(model),
      blockPrefixList: blockPrefixesFromLayersModel(model),
      switchBlockEvery: 3,
      switchMode: 'random',
      seed: 5,
      clipGradNorm: 1,
      verbose: 0,
    });
    const [cls, fromConfig] = tf.serialization.SerializationMap.getMap().classNameMap.BlockOptimizer!;
    expect(cls).toBe(BlockOptimizer);
    const config = optimizer.getConfig();
    const copy = fromConfig(cls, config) as BlockOptimizer;
    expect(copy).toBeInstanceOf(BlockOptimizer);
    // Unbound until it meets its variables, it still round-trips its config.
    expect(copy.getConfig().badam).toBe(config.badam);
    expect(config).toMatchObject({ baseOptimizer: 'Adam', switchBlockEvery: 3, switchMode: 'random' });
    expect(() => copy.activeBlock).toThrow('has not found its variables yet');
  });

  it('dispose() gives the variables their trainable flags back, so another optimizer can train them', () => {
    const model = defaultNamedModel(3);
    const named = namedVariablesFromLayersModel(model);
    const variables = named.map(([, v]) => v);
    variables[5]!.trainable = false; // the user froze the last bias
    const flags = variables.map((v) => v.trainable);
    const optimizer = new BlockOptimizer({
      baseOptimizer: tf.train.adam(0.01),
      namedParameters: named,
      blockPrefixList: blockPrefixesFromLayersModel(model),
      switchBlockEvery: 2,
      verbose: 0,
    });
    expect(variables.map((v) => v.trainable)).not.toEqual(flags);
    optimizer.dispose();
    expect(variables.map((v) => v.trainable)).toEqual(flags);
    const x = tf.randomNormal([8, 4], 0, 1, 'float32', 3);
    const y = tf.randomNormal([8, 2], 0, 1, 'float32', 4);
    const adam = tf.train.adam(0.01);
    const loss = adam.minimize(() => tf.losses.meanSquaredError(y, model.predict(x) as tf.Tensor), true);
    expect(Number.isFinite(loss!.dataSync()[0]!)).toBe(true);
    tf.dispose([x, y, loss!]);
    adam.dispose();
  });

  it("refuses to train a model none of whose variables it knows (another model's optimizer)", async () => {
    const mine = defaultNamedModel(4);
    const other = defaultNamedModel(5);
    const optimizer = new BlockOptimizer({
      baseOptimizer: tf.train.adam(0.01),
      namedParameters: namedVariablesFromLayersModel(mine),
      blockPrefixList: blockPrefixesFromLayersModel(mine),
      verbose: 0,
    });
    other.compile({ optimizer, loss: 'meanSquaredError' });
    const x = tf.randomNormal([8, 4], 0, 1, 'float32', 3);
    const y = tf.randomNormal([8, 2], 0, 1, 'float32', 4);
    await expect(other.trainOnBatch(x, y)).rejects.toThrow(/trains none of the 6 variables.*another model/);
    tf.dispose([x, y]);
  });

  for (const [label, base] of [
    ['tf.train.adam', () => tf.train.adam(0.02)],
    ["{ type: 'adamw' }", () => ({ type: 'adamw' as const, learningRate: 0.02, weightDecay: 0.1 })],
  ] as const) {
    it(`saved mid-block with includeOptimizer and loaded, it goes on exactly as an uninterrupted run (${label})`, async () => {
      const x = tf.randomNormal([16, 4], 0, 1, 'float32', 7);
      const y = tf.randomNormal([16, 2], 0, 1, 'float32', 8);
      const make = (model: tf.Sequential) => {
        const optimizer = new BlockOptimizer({
          baseOptimizer: base(),
          namedParameters: namedVariablesFromLayersModel(model),
          blockPrefixList: blockPrefixesFromLayersModel(model),
          switchBlockEvery: 3,
          switchMode: 'random',
          seed: 11,
          verbose: 0,
        });
        model.compile({ optimizer, loss: 'meanSquaredError' });
        return optimizer;
      };
      const total = 12;
      const saveAfter = 7; // blocks of 3 steps: the third block has taken one step

      const uninterrupted = defaultNamedModel(20);
      const resumed = defaultNamedModel(20);
      resumed.setWeights(uninterrupted.getWeights());
      make(uninterrupted);
      const first = make(resumed);
      const expected: Array<{ loss: number; weights: number[][] }> = [];
      for (let step = 0; step < total; step++) {
        const loss = (await uninterrupted.trainOnBatch(x, y)) as number;
        expected.push({ loss, weights: values(uninterrupted) });
      }

      for (let step = 0; step < saveAfter; step++) {
        expect(await resumed.trainOnBatch(x, y)).toBe(expected[step]!.loss);
      }
      expect(first.engine.stepsInBlock).toBe(1);
      const dir = mkdtempSync(join(tmpdir(), 'badam-layers-'));
      dirs.push(dir);
      const files = fileHandler(dir);
      await resumed.save(files.save, { includeOptimizer: true });
      first.dispose();

      const loaded = await tf.loadLayersModel(files.load());
      const optimizer = loaded.optimizer as BlockOptimizer;
      expect(optimizer).toBeInstanceOf(BlockOptimizer);
      expect(optimizer.iterations).toBe(saveAfter);
      expect(optimizer.engine.stepsInBlock).toBe(1);
      expect(values(loaded)).toEqual(expected[saveAfter - 1]!.weights);
      for (let step = saveAfter; step < total; step++) {
        const loss = (await loaded.trainOnBatch(x, y)) as number;
        expect({ step: step + 1, loss, weights: values(loaded) }).toEqual({
          step: step + 1,
          ...expected[step]!,
        });
      }
      expect(optimizer.iterations).toBe(total);
      tf.dispose([x, y]);
    });
  }

  it('BlockOptimizerRatio: registered, config round-trips, saved and loaded it continues exactly', async () => {
    const x = tf.randomNormal([16, 4], 0, 1, 'float32', 7);
    const y = tf.randomNormal([16, 2], 0, 1, 'float32', 8);
    const make = (model: tf.Sequential) => {
      const optimizer = new BlockOptimizerRatio({
        namedParameters: namedVariablesFromLayersModel(model),
        updateRatio: 0.5,
        preserveThreshold: 4,
        switchBlockEvery: 3,
        maskMode: 'scatter',
        learningRate: 0.05,
        verbose: 0,
      });
      model.compile({ optimizer, loss: 'meanSquaredError' });
      return optimizer;
    };
    // Named layers: scatter masks are seeded by parameter name, so both runs need the same names.
    const uninterrupted = defaultNamedModel(30, ['in', 'hidden', 'out']);
    const resumed = defaultNamedModel(30, ['in', 'hidden', 'out']);
    resumed.setWeights(uninterrupted.getWeights());
    make(uninterrupted);
    const first = make(resumed);
    const [cls, fromConfig] = tf.serialization.SerializationMap.getMap().classNameMap.BlockOptimizerRatio!;
    const copy = fromConfig(cls, first.getConfig()) as BlockOptimizerRatio;
    expect(copy.getConfig().badam).toBe(first.getConfig().badam);
    expect(first.getConfig()).toMatchObject({ learningRate: 0.05, switchBlockEvery: 3, maskMode: 'scatter' });

    const expected: number[][][] = [];
    for (let step = 0; step < 8; step++) {
      await uninterrupted.trainOnBatch(x, y);
      expected.push(values(uninterrupted));
    }
    for (let step = 0; step < 4; step++) {
      await resumed.trainOnBatch(x, y);
      expect(values(resumed)).toEqual(expected[step]);
    }
    const dir = mkdtempSync(join(tmpdir(), 'badam-ratio-'));
    dirs.push(dir);
    const files = fileHandler(dir);
    await resumed.save(files.save, { includeOptimizer: true });
    first.dispose();
    const loaded = await tf.loadLayersModel(files.load());
    expect(loaded.optimizer).toBeInstanceOf(BlockOptimizerRatio);
    expect(loaded.optimizer.iterations).toBe(4);
    for (let step = 4; step < 8; step++) {
      await loaded.trainOnBatch(x, y);
      expect({ step: step + 1, weights: values(loaded) }).toEqual({
        step: step + 1,
        weights: expected[step],
      });
    }
    tf.dispose([x, y]);
  });
});
