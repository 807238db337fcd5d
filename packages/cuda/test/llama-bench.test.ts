import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

describe('GPU Llama benchmark script', () => {
  it('runs end to end at a tiny size on the CPU device (--dry-run, through pnpm bench -- ...)', () => {
    const script = fileURLToPath(new URL('../dist/bench/llama-train.js', import.meta.url));
    // The literal `--` is what `pnpm bench -- --dry-run` hands the script.
    const result = spawnSync(process.execPath, [script, '--', '--dry-run'], { encoding: 'utf8' });
    expect(result.status, result.stderr).toBe(0);
    const lines = result.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const record = JSON.parse(lines[0]!);
    expect(record).toMatchObject({
      peer: 'badam-ts',
      config: 'tiny',
      mode: 'badam',
      batch: 2,
      seq: 16,
      dtype: 'bfloat16',
      gradient_checkpointing: true,
      switch_every: 5,
      device: 'cpu reference',
      dry_run: true,
    });
    expect(record.tok_s).toBeGreaterThan(0);
    expect(Number.isFinite(record.last_loss)).toBe(true);
    // Random init over 256 tokens: the loss starts near ln(256) (plus half the logits' variance).
    expect(Math.abs(record.first_loss - record.expected_first_loss)).toBeLessThan(0.1);
    expect(record.expected_first_loss).toBeCloseTo(Math.log(256) + 0.0002 * 64, 4);
    // The self-check ran before the timing, here on the CPU device against itself.
    expect(record.selfCheck).toMatchObject({
      passed: true,
      device: 'cpu device',
      tolerance: { loss: 0.01, gradient: 0.03 },
    });
    expect(record.selfCheck.cases.map((c: { name: string }) => c.name)).toEqual([
      expect.stringMatching(/head dim 64.*padded/),
      expect.stringMatching(/head dim 128.*padded/),
    ]);
    const kinds = record.peak_gib_by_kind;
    expect(Object.keys(kinds).sort()).toEqual(
      ['activations', 'gradients', 'masters', 'optimizer_state', 'weights'].sort(),
    );
    const bytes = record.peak_bytes_by_kind;
    expect(bytes.weights).toBeGreaterThan(0);
    expect(bytes.masters).toBeGreaterThan(0); // bf16 weights: the active layer has fp32 masters
    expect(bytes.optimizer_state).toBe(2 * bytes.masters);
    expect(bytes.activations).toBeGreaterThan(0);
    expect(record.peak_bytes).toBeGreaterThanOrEqual(bytes.weights + bytes.masters + bytes.optimizer_state);
    const shares = record.phase_share;
    for (const phase of ['forward', 'backward', 'optimizer']) expect(shares[phase]).toBeGreaterThanOrEqual(0);
    expect(shares.forward + shares.backward + shares.optimizer).toBeLessThan(1.2);
  });

  it('names the configs it knows when given another', () => {
    const script = fileURLToPath(new URL('../dist/bench/llama-train.js', import.meta.url));
    const result = spawnSync(process.execPath, [script, '--dry-run', '--config', 'gpt2'], {
      encoding: 'utf8',
    });
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/--config gpt2 is not one of tinyllama-1\.1b, llama3-8b, tiny/);
  });
});

describe('the self-check stops a run whose kernels are wrong', () => {
  it('llama-train: a planted wrong gradient fails the check, names it and times nothing', () => {
    const script = fileURLToPath(new URL('../dist/bench/llama-train.js', import.meta.url));
    const result = spawnSync(process.execPath, [script, '--dry-run'], {
      encoding: 'utf8',
      env: { ...process.env, BADAM_SELF_CHECK_PLANT: 'model.layers.0.mlp.down_proj.weight' },
    });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(
      /self-check failed on cpu device: a BAdam step differs from the CPU device's; nothing is timed/,
    );
    expect(result.stderr).toMatch(
      /model\.layers\.0\.mlp\.down_proj\.weight: rel error 5\.00e-1 \(<= 0\.03\)/,
    );
    const lines = result.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!).selfCheck.passed).toBe(false);
    expect(result.stdout).not.toMatch(/tok_s/);
  });
});

describe('GPU run script', () => {
  it('runs every part that can run without a GPU (--dry-run) in a tree as the device gets it, and writes the summary', () => {
    // The tree a device call gets: the checkout and the carried builds, no node_modules links, and no other
    // script run before (gpu-run.sh sets its environment up itself).
    const out = mkdtempSync(join(tmpdir(), 'badam-gpu-run-'));
    const tree = mkdtempSync(join(tmpdir(), 'badam-gpu-tree-'));
    try {
      const repo = fileURLToPath(new URL('../../..', import.meta.url));
      const cuda = join(tree, 'packages', 'cuda');
      mkdirSync(join(cuda, 'bench'), { recursive: true });
      mkdirSync(join(tree, 'node_modules', '.pnpm'), { recursive: true });
      for (const f of ['gpu-run.sh', 'device-env.sh'])
        copyFileSync(join(repo, 'packages/cuda/bench', f), join(cuda, 'bench', f));
      copyFileSync(join(repo, 'packages/cuda/package.json'), join(cuda, 'package.json'));
      for (const d of ['build', 'dist']) symlinkSync(join(repo, 'packages/cuda', d), join(cuda, d));
      for (const p of ['core', 'safetensors'])
        symlinkSync(join(repo, 'packages', p), join(tree, 'packages', p));
      const gyp = 'node-gyp-build@4.8.4';
      symlinkSync(join(repo, 'node_modules/.pnpm', gyp), join(tree, 'node_modules/.pnpm', gyp));
      const result = spawnSync('bash', [join(cuda, 'bench', 'gpu-run.sh'), '--dry-run'], {
        encoding: 'utf8',
        env: { ...process.env, OUT: out },
      });
      expect(result.status, result.stderr).toBe(0);
      expect(existsSync(join(cuda, 'node_modules', '@badam', 'core', 'dist', 'index.js'))).toBe(true);
      const summary = readFileSync(join(out, 'summary.md'), 'utf8');
      expect(summary).toMatch(/self-check: passed on cpu device \(2 models/);
      expect(summary).toMatch(/device check: (\d+)\/\1 kernel checks passed/);
      expect(summary).toMatch(
        /^\| tiny \| 2 x 16 \| [\d.]+ \| - \| - \| 0\.\d+ \| - \| - \| [\d.]+ \/ [\d.]+ \/ [\d.]+ \|/m,
      );
      expect(JSON.parse(readFileSync(join(out, 'ours.jsonl'), 'utf8')).config).toBe('tiny');
      expect(readFileSync(join(out, 'gpu-run.log'), 'utf8')).toMatch(/peer tiny skipped in a dry run/);
    } finally {
      rmSync(out, { recursive: true, force: true });
      rmSync(tree, { recursive: true, force: true });
    }
  }, 240_000); // every part runs, in spawned processes: minutes on a loaded 2-core machine

  it('stops at the self-check when a kernel result is wrong: nothing timed, the worst mismatches printed', () => {
    const out = mkdtempSync(join(tmpdir(), 'badam-gpu-run-'));
    try {
      const script = fileURLToPath(new URL('../bench/gpu-run.sh', import.meta.url));
      const result = spawnSync('bash', [script, '--dry-run'], {
        encoding: 'utf8',
        env: { ...process.env, OUT: out, BADAM_SELF_CHECK_PLANT: 'model.layers.0.self_attn.k_proj.weight' },
      });
      expect(result.status).toBe(1);
      const log = readFileSync(join(out, 'gpu-run.log'), 'utf8');
      expect(log).toMatch(/self-check failed/);
      expect(log).toMatch(/model\.layers\.0\.self_attn\.k_proj\.weight: rel error 5\.00e-1/);
      expect(log).toMatch(/stopped by the self-check/);
      expect(readFileSync(join(out, 'summary.md'), 'utf8')).toMatch(/self-check FAILED.*nothing was timed/);
      expect(existsSync(join(out, 'ours.jsonl'))).toBe(false);
      expect(existsSync(join(out, 'device-check.json'))).toBe(false);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, 240_000);
});
