import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Device } from '../src/index.js';

const hasGpu = Device.cudaStatus().devices > 0;

describe('README', () => {
  it('the example runs as written: one layer of Adam state at a time, weights move', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const example = /```js\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(example).toBeDefined();
    const result = spawnSync(process.execPath, ['--input-type=module', '-e', example!], {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      encoding: 'utf8',
    });
    expect(result.status, result.stderr).toBe(0);
    const lines = result.stdout.trim().split('\n');
    // 64 x 32 fp32 moments (2 x 8192 B) and one fp32 master (8192 B) for the one active tensor, at every step.
    for (let step = 1; step <= 6; step++) {
      expect(lines[step - 1]).toBe(`step ${step}: trained 1 tensor, Adam state 16384 B, masters 8192 B`);
    }
    const weight = Number(/layer 0 weight (\S+)/.exec(lines[6]!)![1]);
    expect(weight).toBeLessThan(0.5);
  });
});

describe('device check script', () => {
  it('runs end to end with the CPU device standing in for the GPU (--dry-run --quick)', () => {
    const script = fileURLToPath(new URL('../dist/src/cli/device-check.js', import.meta.url));
    const result = spawnSync(process.execPath, [script, '--dry-run', '--quick'], { encoding: 'utf8' });
    expect(result.status, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toMatch(/(\d+)\/\1 checks passed/);
    expect(result.stdout).toContain('fused AdamW');
    expect(result.stdout).toContain('bf16 GEMM');
    // The Llama kernels: each checked against the CPU device, attention and cross-entropy timed.
    for (const kernel of ['attentionBackward', 'crossEntropy', 'rmsNormBackward', 'rope', 'swigluBackward'])
      expect(result.stdout).toMatch(new RegExp(`^ok +${kernel} `, 'm'));
    expect(result.stdout).toContain('what: attention forward');
    expect(result.stdout).toContain('what: crossEntropy with gradient in place');
  });

  it('--help and --version answer and exit 0; an unknown flag is a usage error with no stack trace', () => {
    const script = fileURLToPath(new URL('../dist/src/cli/device-check.js', import.meta.url));
    const run = (...args: string[]) => spawnSync(process.execPath, [script, ...args], { encoding: 'utf8' });
    for (const flag of ['--help', '-h']) {
      const help = run(flag);
      expect(help.status).toBe(0);
      expect(help.stdout).toMatch(/^Usage: badam-cuda-check /);
    }
    expect(run('--version').stdout.trim()).toMatch(/^badam-cuda-check \d+\.\d+\.\d+/);
    const bad = run('--bogus');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain("badam-cuda-check: error: Unknown option '--bogus'");
    expect(bad.stderr).not.toMatch(/\n\s+at /);
  });

  // On a machine with a GPU the same command runs the real check instead: that is the device-check's job.
  it.skipIf(hasGpu)('without a GPU and without --dry-run it exits 2 saying why', () => {
    const script = fileURLToPath(new URL('../dist/src/cli/device-check.js', import.meta.url));
    const result = spawnSync(process.execPath, [script], { encoding: 'utf8' });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('badam-cuda-check: no GPU to check:');
  });
});
