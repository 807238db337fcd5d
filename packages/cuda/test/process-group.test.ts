import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { collectivesStatus, Device, ProcessGroup } from '../src/index.js';
import { glooAvailable, runRanks } from './ranks.js';

// Ranks are real processes over loopback, each running the built package (test/fixtures/collectives-run.mjs).
const script = fileURLToPath(new URL('./fixtures/collectives-run.mjs', import.meta.url));
const parse = (stdout: string) => JSON.parse(stdout.trim().split('\n').at(-1)!);

describe('collectives', () => {
  it('says why NCCL and Gloo are or are not there, without failing to load', () => {
    const status = collectivesStatus();
    // NCCL is opened at run time (libnccl.so.2): on a machine without it the addon loads and says why.
    if (!status.nccl.available) expect(status.nccl.reason).toMatch(/libnccl\.so\.2/);
    if (!status.gloo.available) expect(status.gloo.reason).toMatch(/Gloo/);
    expect(() =>
      ProcessGroup.open(Device.cpu(), { rank: 0, worldSize: 1, backend: 'nccl', masterPort: 1 }),
    ).toThrow(/nccl backend moves GPU memory: use gloo on the CPU device/);
    expect(() => ProcessGroup.open(Device.cpu(), { rank: 2, worldSize: 2 })).toThrow(
      'RANK must be a whole number in [0, 2), got 2',
    );
  });

  it.skipIf(!glooAvailable())(
    'over 3 processes: uneven all-gather, reduce-scatter summed in rank order, host sums equal bit for bit, one broadcast decision',
    async () => {
      const results = await runRanks(script, 3);
      for (const r of results) expect(r.code, r.stderr).toBe(0);
      const out = results.map((r) => parse(r.stdout));
      const expected = Array.from({ length: 7 }, (_, i) => i + 0.5);
      for (const o of out) {
        expect(o.gather_float32).toEqual(expected);
        expect(o.gather_bfloat16).toEqual(expected); // halves are exact in bf16
        // (1 + 2 + 3) * 0.1 * (i + 1), added in rank order in fp32, onto 1000 + i.
        o.reduced.forEach((v: number, j: number) => {
          const i = o.offset + j;
          const f = Math.fround;
          const sum = f(f(f(0.1 * (i + 1)) + f(2 * 0.1 * (i + 1))) + f(3 * 0.1 * (i + 1)));
          expect(v).toBe(f(1000 + i + sum));
        });
        expect(o.sum).toEqual(out[0].sum);
        expect(o.decision).toEqual({ order: [2, 0, 1], seed: 42 });
        expect(o.closed).toBe(true);
      }
      expect(out.map((o) => o.offset)).toEqual([0, 2, 4]);
      expect(out[0].sum).toEqual([0.1 + 0.2 + 0.30000000000000004, 1 + 1e16 + 1]);
    },
  );

  it.skipIf(!glooAvailable())(
    'a rank that stops answering makes the others fail within the timeout, naming it',
    async () => {
      const results = await runRanks(script, 3, { STALL: '1', TIMEOUT_MS: '3000' });
      for (const rank of [0, 2]) {
        const r = results[rank]!;
        expect(r.code).not.toBe(0);
        expect(parse(r.stdout).error).toMatch(
          new RegExp(
            `^rank ${rank}: barrier failed: rank\\(s\\) 1 did not reach the collective the others waited 3 s for`,
          ),
        );
        expect(r.ms).toBeLessThan(20_000);
      }
      // The stalled rank itself is stopped once the others have gone (it never returns from its loop).
      expect(results[1]!.code).not.toBe(0);
      expect(results[1]!.stderr).toMatch(/rank 1: stopping: rank [02] exited or was killed/);
    },
  );
});
