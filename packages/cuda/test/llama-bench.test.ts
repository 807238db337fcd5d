import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
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
    // Random init over 256 tokens: the loss starts near ln(256).
    expect(Math.abs(record.last_loss - Math.log(256))).toBeLessThan(1);
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

describe('GPU run script', () => {
  it('runs every part that can run without a GPU (--dry-run) and writes the summary', () => {
    const out = mkdtempSync(join(tmpdir(), 'badam-gpu-run-'));
    try {
      const script = fileURLToPath(new URL('../bench/gpu-run.sh', import.meta.url));
      const result = spawnSync('bash', [script, '--dry-run'], {
        encoding: 'utf8',
        env: { ...process.env, OUT: out },
      });
      expect(result.status, result.stderr).toBe(0);
      const summary = readFileSync(join(out, 'summary.md'), 'utf8');
      expect(summary).toMatch(/device check: (\d+)\/\1 kernel checks passed/);
      expect(summary).toMatch(
        /^\| tiny \| 2 x 16 \| [\d.]+ \| - \| - \| 0\.\d+ \| - \| - \| [\d.]+ \/ [\d.]+ \/ [\d.]+ \|/m,
      );
      expect(JSON.parse(readFileSync(join(out, 'ours.jsonl'), 'utf8')).config).toBe('tiny');
      expect(readFileSync(join(out, 'gpu-run.log'), 'utf8')).toMatch(/peer tiny skipped in a dry run/);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
