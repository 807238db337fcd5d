import { type NamedParameterInfo, planTraining } from '@badam/core';
import { describe, expect, it } from 'vitest';
import { KeyedPermutation, sparseAdamUpdate, UpdateMaskSchedule } from '../src/index.js';

const param = (name: string, shape: number[]): NamedParameterInfo => ({ name, shape, dtype: 'float32' });

const MODEL = [
  param('model.embed_tokens.weight', [32, 8]),
  param('model.layers.0.self_attn.q_proj.weight', [8, 16]),
  param('model.layers.0.input_layernorm.weight', [8]),
  param('model.layers.1.self_attn.q_proj.weight', [10, 20]),
  param('model.norm.weight', [8]),
  param('lm_head.weight', [32, 8]),
];

function windowSequence(schedule: UpdateMaskSchedule, name: string, windows: number): number[][] {
  const result: number[][] = [];
  for (let w = 0; w < windows; w++) {
    result.push([...schedule.indices(name)]);
    for (let s = 0; s < schedule.switchBlockEvery; s++) schedule.advance();
  }
  return result;
}

describe('UpdateMaskSchedule, adjacent', () => {
  it('hand-derived windows: [offset, offset + k) moving by k every switchBlockEvery steps, wrapping around', () => {
    const schedule = new UpdateMaskSchedule([param('layers.0.w', [10, 11])], {
      updateRatio: 0.3,
      switchBlockEvery: 2,
      preserveThreshold: 0,
    });
    // n = 110, k = floor(33) = 33: windows start at 0, 33, 66, 99 (wrapping: 99..109, 0..21).
    const windows = windowSequence(schedule, 'layers.0.w', 4);
    expect(windows[0]).toEqual(Array.from({ length: 33 }, (_, j) => j));
    expect(windows[1]).toEqual(Array.from({ length: 33 }, (_, j) => 33 + j));
    expect(windows[3]).toEqual([
      ...Array.from({ length: 11 }, (_, j) => 99 + j),
      ...Array.from({ length: 22 }, (_, j) => j),
    ]);
  });

  it('the optimizer state resets exactly every switchBlockEvery steps, and the indices stay fixed in between', () => {
    const schedule = new UpdateMaskSchedule([param('layers.0.w', [20, 20])], { switchBlockEvery: 3 });
    const first = schedule.indices('layers.0.w');
    const resets = Array.from({ length: 9 }, () => {
      const same = schedule.indices('layers.0.w') === first || schedule.window > 0;
      return [schedule.advance().reset, same];
    });
    expect(resets.map(([r]) => r)).toEqual([false, false, true, false, false, true, false, false, true]);
    expect(schedule.window).toBe(3);
    expect(schedule.stepsInWindow).toBe(0);
  });

  it('embedding and lm_head are frozen unless included; small parameters are updated whole', () => {
    const schedule = new UpdateMaskSchedule(MODEL, { updateRatio: 0.25 });
    expect(schedule.frozenNames).toEqual(['model.embed_tokens.weight', 'lm_head.weight']);
    expect(schedule.parameters.map((p) => [p.name, p.maskSize, p.whole])).toEqual([
      ['model.layers.0.self_attn.q_proj.weight', 32, false],
      ['model.layers.0.input_layernorm.weight', 8, true],
      ['model.layers.1.self_attn.q_proj.weight', 50, false],
      ['model.norm.weight', 8, true],
    ]);
    expect([...schedule.indices('model.norm.weight')]).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    const all = new UpdateMaskSchedule(MODEL, { includeEmbedding: true, includeLmHead: true });
    expect(all.frozenNames).toEqual([]);
    expect(all.maskedElements()).toBe(25 + 12 + 8 + 20 + 8 + 25);
  });

  it("trains exactly what core's plan says the ratio trains", () => {
    for (const partition of [{}, { includeEmbedding: true }, { includeLmHead: true }]) {
      const plan = planTraining({
        settings: { method: 'sparse', learningRate: 1e-3 },
        parameters: MODEL,
        partition,
        logFn: () => {},
      });
      if (plan.optimizer.kind !== 'ratio') throw new Error('the ratio plans its masks');
      const schedule = new UpdateMaskSchedule(MODEL, plan.optimizer.masks);
      expect(schedule.parameters.map((p) => p.name)).toEqual(plan.partition.groups[0]);
      expect(schedule.frozenNames).toEqual(plan.partition.frozenNames);
    }
  });

  it('paramUpdateRatios override by name prefix', () => {
    const schedule = new UpdateMaskSchedule(MODEL, {
      updateRatio: 0.1,
      paramUpdateRatios: { 'layers.1.': 0.5 },
    });
    expect(schedule.parameter('model.layers.1.self_attn.q_proj.weight').maskSize).toBe(100);
    expect(schedule.parameter('model.layers.0.self_attn.q_proj.weight').maskSize).toBe(12);
  });
});

describe('UpdateMaskSchedule, scatter (property tests)', () => {
  const sizes: Array<[number, number]> = [
    [7, 19],
    [16, 16],
    [3, 101],
    [50, 50],
  ];
  for (const [rows, cols] of sizes) {
    for (const ratio of [0.1, 0.25, 0.5, 0.37]) {
      it(`n = ${rows * cols}, ratio ${ratio}: mask size, wrap-around, one cycle's windows disjoint and covering`, () => {
        const name = 'model.layers.0.mlp.up_proj.weight';
        const n = rows * cols;
        const k = Math.floor(n * ratio);
        const schedule = new UpdateMaskSchedule([param(name, [rows, cols])], {
          updateRatio: ratio,
          switchBlockEvery: 1,
          maskMode: 'scatter',
          preserveThreshold: 0,
          seed: rows * 1000 + cols,
        });
        const cycle = Math.ceil(n / k);
        const windows = windowSequence(schedule, name, cycle);
        for (const w of windows) {
          expect(w).toHaveLength(k);
          expect(new Set(w).size).toBe(k);
          for (const i of w) expect(i >= 0 && i < n).toBe(true);
        }
        const full = windows.slice(0, Math.floor(n / k)).flat();
        expect(new Set(full).size).toBe(full.length); // disjoint
        expect(new Set(windows.flat()).size).toBe(n); // covering
        // Scattered: not the adjacent window.
        expect(windows[0]).not.toEqual(Array.from({ length: k }, (_, j) => j));
      });
    }
  }

  it('the permutation is seeded per parameter: same seed same mask, other parameters other masks', () => {
    const params = [param('model.layers.0.a.weight', [40, 40]), param('model.layers.0.b.weight', [40, 40])];
    const a = new UpdateMaskSchedule(params, { maskMode: 'scatter', seed: 5 });
    const b = new UpdateMaskSchedule(params, { maskMode: 'scatter', seed: 5 });
    const c = new UpdateMaskSchedule(params, { maskMode: 'scatter', seed: 6 });
    expect(a.indices('model.layers.0.a.weight')).toEqual(b.indices('model.layers.0.a.weight'));
    expect(a.indices('model.layers.0.a.weight')).not.toEqual(a.indices('model.layers.0.b.weight'));
    expect(a.indices('model.layers.0.a.weight')).not.toEqual(c.indices('model.layers.0.a.weight'));
  });

  it('keepMask: false rebuilds the same indices every call instead of caching them', () => {
    const params = [param('model.layers.0.a.weight', [40, 40])];
    const kept = new UpdateMaskSchedule(params, { maskMode: 'scatter', keepMask: true });
    const rebuilt = new UpdateMaskSchedule(params, { maskMode: 'scatter', keepMask: false });
    expect(kept.indices('model.layers.0.a.weight')).toBe(kept.indices('model.layers.0.a.weight'));
    expect(rebuilt.indices('model.layers.0.a.weight')).not.toBe(rebuilt.indices('model.layers.0.a.weight'));
    expect(rebuilt.indices('model.layers.0.a.weight')).toEqual(kept.indices('model.layers.0.a.weight'));
  });

  it('state() / loadState() resume the same windows', () => {
    const params = [param('model.layers.0.a.weight', [30, 30])];
    const options = { maskMode: 'scatter' as const, switchBlockEvery: 4, updateRatio: 0.2 };
    const a = new UpdateMaskSchedule(params, options);
    for (let i = 0; i < 11; i++) a.advance();
    const b = new UpdateMaskSchedule(params, options);
    b.loadState(JSON.parse(JSON.stringify(a.state())));
    expect(b.indices('model.layers.0.a.weight')).toEqual(a.indices('model.layers.0.a.weight'));
    expect(b.stepsInWindow).toBe(3);
    expect(() => new UpdateMaskSchedule(params, { ...options, seed: 1 }).loadState(a.state())).toThrow(
      /saved for other/,
    );
  });

  it('rejects bad options naming them', () => {
    expect(() => new UpdateMaskSchedule(MODEL, { updateRatio: 0 })).toThrow(
      'updateRatio must be a number in (0, 1], got 0',
    );
    expect(() => new UpdateMaskSchedule(MODEL, { switchBlockEvery: 0 })).toThrow(
      'switchBlockEvery must be an integer >= 1, or -1 to never switch, got 0',
    );
    // The old name still works, with a warning, and its errors name it.
    expect(new UpdateMaskSchedule(MODEL, { switchEvery: 7 }).warnings).toContain(
      'option switchEvery is deprecated; use switchBlockEvery',
    );
    expect(() => new UpdateMaskSchedule(MODEL, { switchEvery: 0 })).toThrow(
      'switchEvery must be an integer >= 1, or -1 to never switch, got 0',
    );
    expect(() => new UpdateMaskSchedule(MODEL, { maskMode: 'random' as 'scatter' })).toThrow(
      /maskMode must be "adjacent" or "scatter"/,
    );
    expect(() => new UpdateMaskSchedule(MODEL, { paramUpdateRatios: { 'layers.9.': 0.5 } })).toThrow(
      /no parameter name contains "layers.9."/,
    );
    expect(() => new UpdateMaskSchedule(MODEL, { paramUpdateRatios: { 'layers.0.': 2 } })).toThrow(
      /paramUpdateRatios\["layers.0."\] must be/,
    );
    expect(() => new UpdateMaskSchedule(MODEL, { switch_every: 3 } as never)).toThrow(
      /switch_every must be absent/,
    );
  });
});

describe('KeyedPermutation', () => {
  it.each([1, 2, 3, 5, 64, 1000, 65_537])('is a bijection of 0..%i-1', (n) => {
    const perm = new KeyedPermutation(n, 11);
    const images = Array.from({ length: n }, (_, i) => perm.at(i));
    expect(new Set(images).size).toBe(n);
    expect(Math.max(...images)).toBe(n - 1);
  });
});

describe('sparseAdamUpdate', () => {
  it('hand-derived first two steps on the masked entries only', () => {
    const p = Float32Array.of(1, 1, 1, 1);
    const g = Float32Array.of(0.5, -2, 3, 4);
    const idx = Int32Array.of(1, 2);
    const m = new Float32Array(2);
    const v = new Float32Array(2);
    const config = { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8 };
    sparseAdamUpdate(p, g, idx, m, v, config, 1);
    // Step 1: m = 0.1 g, v = 0.001 g^2, step size 0.1 sqrt(0.001) / 0.1: the update is lr * sign(g).
    expect(p[0]).toBe(1);
    expect(p[3]).toBe(1);
    expect(p[1]).toBeCloseTo(1.1, 6);
    expect(p[2]).toBeCloseTo(0.9, 6);
    expect([...m]).toEqual([Math.fround(-0.2), Math.fround(0.3)]);
    sparseAdamUpdate(p, g, idx, m, v, config, 2);
    const m2 = 0.9 * 0.3 + 0.1 * 3;
    const v2 = 0.999 * 0.009 + 0.001 * 9;
    const step = (0.1 * Math.sqrt(1 - 0.999 ** 2)) / (1 - 0.81);
    expect(p[2]).toBeCloseTo(0.9 - (step * m2) / (Math.sqrt(v2) + 1e-8), 5);
  });
});
