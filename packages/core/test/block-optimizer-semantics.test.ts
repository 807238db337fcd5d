import { describe, expect, it } from 'vitest';
import {
  adamwConfigOf,
  adamwUpdate,
  BlockOptimizer,
  GradientAccumulation,
  type LogLevel,
  numel,
  type OptimizerDescription,
  ReferenceBackend,
  resolveOptimizerDescription,
  roundToBfloat16,
} from '../src/index.js';
import { syntheticGradient, tinyLlamaParameters } from './fixtures/tiny-llama.js';

function backward(optimizer: BlockOptimizer<OptimizerDescription, ReferenceBackend>, microStep: number) {
  optimizer.backend.accumulateGradients(
    new Map(
      optimizer.trainableParameters.map((p) => [
        p.name,
        syntheticGradient(p.name, numel(p.shape), microStep),
      ]),
    ),
  );
}

describe('global-norm clipping lives in the BlockOptimizer', () => {
  it('folds the clip coefficient of the mean gradient into the update: AdamW sees g * min(1, c / (|g| + 1e-6))', () => {
    const parameters = tinyLlamaParameters();
    const backend = new ReferenceBackend(parameters);
    const optimizer = new BlockOptimizer(
      {
        baseOptimizer: { type: 'adamw', learningRate: 0.05 },
        namedParameters: parameters,
        clipGradNorm: 0.5,
        gradientAccumulationSteps: 2,
        verbose: 0,
      },
      backend,
    );
    const names = optimizer.trainableNames;
    const before = new Map(names.map((n) => [n, backend.weight(n)]));
    backward(optimizer, 0);
    expect(optimizer.step().applied).toBe(false);
    backward(optimizer, 1);
    const outcome = optimizer.step();

    // By hand: the mean of the two micro-batches, its global norm, torch's coefficient.
    const mean = new Map(
      names.map((n) => {
        const size = before.get(n)!.length;
        const a = syntheticGradient(n, size, 0);
        const b = syntheticGradient(n, size, 1);
        return [n, a.map((x, i) => (x + b[i]!) / 2)];
      }),
    );
    const norm = Math.sqrt([...mean.values()].reduce((s, g) => s + g.reduce((t, x) => t + x * x, 0), 0));
    expect(norm).toBeGreaterThan(0.5); // the case under test: clipping applies
    expect(outcome.gradNorm).toBeCloseTo(norm, 5);
    const coefficient = 0.5 / (norm + 1e-6);
    for (const name of names) {
      const sum = syntheticGradient(name, before.get(name)!.length, 0).map(
        (x, i) => x + syntheticGradient(name, before.get(name)!.length, 1)[i]!,
      );
      const expected = Float32Array.from(before.get(name)!);
      const zeros = () => new Float32Array(expected.length);
      adamwUpdate(expected, sum, zeros(), zeros(), adamwConfigOf(), {
        lr: 0.05,
        step: 1,
        gradientScale: coefficient / 2,
        decay: false,
      });
      const got = backend.weight(name);
      for (let i = 0; i < got.length; i++) expect(got[i]).toBeCloseTo(expected[i]!, 6);
    }
  });

  it("divides by the norm plus torch's 1e-6: a tiny norm shows it", () => {
    // Mean gradient norm 1e-6 (sum of squares 4e-12 over G = 2), clipped to 1e-7: torch's coefficient is
    // 1e-7 / (1e-6 + 1e-6) = 0.05; without the 1e-6 it would be 0.1, with another epsilon (1e-8) 0.099.
    const accumulation = new GradientAccumulation({ steps: 2, maxGradNorm: 1e-7 });
    const scale = accumulation.updateScale(() => 4e-12);
    expect(scale.gradNorm).toBeCloseTo(1e-6, 18);
    expect(scale.clipCoefficient).toBeCloseTo(0.05, 12);
    expect(scale.gradientScale).toBeCloseTo(0.025, 12);
  });

  it('leaves gradients whose norm is within bounds alone, and asks the backend for nothing without clipping', () => {
    const accumulation = new GradientAccumulation({ steps: 4, maxGradNorm: 10 });
    expect(accumulation.updateScale(() => 9)).toEqual({
      gradientScale: 0.25,
      gradNorm: 0.75,
      clipCoefficient: 1,
    });
    const noNorm = () => {
      throw new Error('asked for a norm without clipping');
    };
    expect(new GradientAccumulation({ steps: 2 }).updateScale(noNorm)).toEqual({ gradientScale: 0.5 });
    // 0 is "no clipping" too, as Hugging Face's max_grad_norm 0.
    const zero = new GradientAccumulation({ steps: 2, maxGradNorm: 0 });
    expect(zero.maxGradNorm).toBeUndefined();
    expect(zero.updateScale(noNorm)).toEqual({ gradientScale: 0.5 });
    expect(() => new GradientAccumulation({ maxGradNorm: -1 })).toThrow(
      'clipGradNorm must be a finite number >= 0, got -1 (0 or absent: no clipping)',
    );
  });
});

describe("fixed mode runs the reference's sub-problems", () => {
  it('every K steps: fresh Adam state and fp32 masters made again from the stored bf16 weights', () => {
    const k = 3;
    const parameters = tinyLlamaParameters({ dtype: 'bfloat16' });
    const backend = new ReferenceBackend(parameters);
    const logs: string[] = [];
    const optimizer = new BlockOptimizer(
      {
        baseOptimizer: { learningRate: 0.01 },
        namedParameters: parameters,
        switchMode: 'fixed',
        startBlock: 2,
        switchBlockEvery: k,
        logFn: (m) => logs.push(m),
      },
      backend,
    );
    const names = optimizer.trainableNames;
    expect(names.every((n) => n.includes('layers.2.'))).toBe(true);
    // The reference by hand: per sub-problem, master = stored (rounded) weight, fresh m and v.
    const weights = new Map(names.map((n) => [n, backend.weight(n)]));
    const config = adamwConfigOf();
    const outcomes = [];
    for (let period = 0; period < 3; period++) {
      const state = new Map(
        names.map((n) => {
          const w = weights.get(n)!;
          return [
            n,
            { master: Float32Array.from(w), m: new Float32Array(w.length), v: new Float32Array(w.length) },
          ];
        }),
      );
      for (let t = 1; t <= k; t++) {
        const micro = period * k + t;
        backward(optimizer, micro);
        outcomes.push(optimizer.step());
        for (const n of names) {
          const s = state.get(n)!;
          adamwUpdate(s.master, syntheticGradient(n, s.master.length, micro), s.m, s.v, config, {
            lr: 0.01,
            step: t,
            gradientScale: 1,
            decay: false,
          });
          weights.set(n, s.master.map(roundToBfloat16));
        }
      }
    }
    for (const n of names) expect(backend.weight(n), n).toEqual(weights.get(n));
    expect(outcomes.map((o) => o.restarted)).toEqual([
      false,
      false,
      true,
      false,
      false,
      true,
      false,
      false,
      true,
    ]);
    expect(outcomes.some((o) => o.switched)).toBe(false);
    expect(logs.join('\n')).toContain('step 3: block 2 done after 3 steps, starting a new sub-problem on it');
  });
});

describe('the optimizer description and the option names', () => {
  it('fills in AdamW defaults, reads the old field names with a warning, and names a bad field', () => {
    expect(resolveOptimizerDescription({})).toEqual({
      type: 'adamw',
      learningRate: undefined,
      betas: [0.9, 0.999],
      epsilon: 1e-8,
      weightDecay: 0,
    });
    const warnings: string[] = [];
    expect(resolveOptimizerDescription({ beta1: 0.8, eps: 1e-6 }, (m) => warnings.push(m))).toMatchObject({
      betas: [0.8, 0.999],
      epsilon: 1e-6,
    });
    expect(warnings).toEqual([
      'baseOptimizer.beta1 is deprecated; use betas: [beta1, beta2]',
      'baseOptimizer.eps is deprecated; use epsilon',
    ]);
    expect(() => resolveOptimizerDescription({ type: 'sgd' as 'adamw' })).toThrow(
      'baseOptimizer.type must be one of adamw, got "sgd"',
    );
    expect(() => resolveOptimizerDescription({ lr: 1 } as OptimizerDescription)).toThrow(
      'baseOptimizer.lr must be absent: it is not a field of an optimizer description, got 1 (known fields: type, learningRate, betas, epsilon, weightDecay)',
    );
    expect(() => resolveOptimizerDescription({ betas: [0.9, 1] })).toThrow(
      'baseOptimizer.betas[1] must be a finite number >= 0 and < 1, got 1',
    );
  });

  it('takes the learning rate from the description, and the old option names lr / switchEvery with a warning', () => {
    const parameters = tinyLlamaParameters();
    const logs: Array<[string, LogLevel]> = [];
    const logFn = (m: string, level: LogLevel) => logs.push([m, level]);
    const fromDescription = new BlockOptimizer(
      { baseOptimizer: { learningRate: 0.03 }, namedParameters: parameters, verbose: 0, logFn },
      new ReferenceBackend(parameters),
    );
    expect(fromDescription.lr).toBe(0.03);
    const legacy = new BlockOptimizer(
      { baseOptimizer: {}, namedParameters: parameters, lr: 0.02, switchEvery: 7, verbose: 0, logFn },
      new ReferenceBackend(parameters),
    );
    expect([legacy.lr, legacy.switchBlockEvery]).toEqual([0.02, 7]);
    expect(logs).toEqual([
      ['BAdam warning: option lr is deprecated; use learningRate', 'warn'],
      ['BAdam warning: option switchEvery is deprecated; use switchBlockEvery', 'warn'],
    ]);
    expect(
      () =>
        new BlockOptimizer(
          { baseOptimizer: {}, namedParameters: parameters },
          new ReferenceBackend(parameters),
        ),
    ).toThrow(
      "learningRate must be a finite number >= 0, got undefined (set it here or as the optimizer description's learningRate)",
    );
  });
});
