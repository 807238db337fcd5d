import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { runEstimateCommand } from '../src/cli/estimate-command.js';

function run(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = runEstimateCommand(argv, { log: (t) => out.push(t), error: (t) => err.push(t) });
  return { code, stdout: out.join('\n'), stderr: err.join('\n') };
}

const configDir = (name: string) => fileURLToPath(new URL(`./fixtures/configs/${name}`, import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'badam-estimate-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function rowOf(stdout: string, method: string): string[] {
  const line = stdout.split('\n').find((l) => l.startsWith(method));
  expect(line, `a "${method}" row`).toBeDefined();
  return line!
    .slice(method.length)
    .trim()
    .split(/\s{2,}/);
}

describe('badam-estimate', () => {
  it('--version (and -V) prints the package version and exits 0', () => {
    const { version } = JSON.parse(
      readFileSync(fileURLToPath(new URL('../package.json', import.meta.url)), 'utf8'),
    ) as { version: string };
    for (const flag of ['--version', '-V']) {
      const { code, stdout } = run(flag);
      expect(code).toBe(0);
      expect(stdout).toBe(`badam-estimate ${version}`);
    }
  });

  it('Llama 3-8B, D = 32: ~16 GB bf16 weights plus ~3.5-4 GB for the active block, against 128 GB+ for full Adam', () => {
    const { code, stdout } = run('--config', join(configDir('llama3-8b'), 'config.json'));
    expect(code).toBe(0);
    expect(stdout).toMatch(/llama, 8\.03B parameters, 32 layers, weights bfloat16/);
    expect(stdout).toMatch(/D = 32/);
    // columns: trained, weights, masters, gradients, optimizer, training state, activations, total
    const adam = rowOf(stdout, 'full Adam');
    expect(adam.slice(0, 6)).toEqual(['8.03B', '16.06 GB', '32.12 GB', '32.12 GB', '64.24 GB', '128.48 GB']);
    const badam = rowOf(stdout, 'BAdam (D = 32)');
    expect(badam.slice(0, 6)).toEqual(['218.1M', '16.06 GB', '0.87 GB', '0.87 GB', '1.74 GB', '3.49 GB']);
    expect(stdout).toMatch(/2M \+ 16M\/D = 16\.06 GB \+ 4\.02 GB = 20\.08 GB; full Adam 18M = 144\.54 GB/);
  });

  it('--blocks module / matrix change D; a model directory works in place of config.json', () => {
    expect(run('--config', configDir('llama3-8b'), '--blocks', 'module').stdout).toMatch(/BAdam \(D = 64\)/);
    expect(run('--config', configDir('llama3-8b'), '--blocks', 'matrix').stdout).toMatch(/BAdam \(D = 224\)/);
  });

  it('reads Mistral, Qwen2 and RoBERTa config.json files', () => {
    expect(run('--config', configDir('mistral-7b')).stdout).toMatch(/mistral, 7\.24B parameters, 32 layers/);
    expect(run('--config', configDir('qwen2-7b')).stdout).toMatch(/qwen2, 7\.62B parameters, 28 layers/);
    const roberta = run('--config', configDir('roberta-large'), '--dtype', 'fp32');
    expect(roberta.code).toBe(0);
    expect(roberta.stdout).toMatch(/roberta, 355\.4M parameters, 24 layers, weights float32/);
    expect(rowOf(roberta.stdout, 'BAdam (D = 24)')[2]).toBe('0.00 GB'); // fp32 weights need no masters
  });

  it('--device-memory 24: the largest batch per sequence length on a 24 GiB card, from the step memory model', () => {
    const { code, stdout } = run('--model', 'llama3-8b', '--device-memory', '24');
    expect(code).toBe(0);
    expect(stdout).toMatch(/BAdam \(D = 32\), weights and activations bfloat16, gradient checkpointing on/);
    expect(stdout).toMatch(/within 23\.00 GiB/);
    const at512 = stdout
      .split('\n')
      .find((l) => l.startsWith('512 '))!
      .trim()
      .split(/\s+/);
    expect(Number(at512[1])).toBeGreaterThanOrEqual(2); // the benchmark's 2 x 512 fits
    expect(Number(at512[3])).toBeLessThanOrEqual(23);
    const json = JSON.parse(
      run('--model', 'llama3-8b', '--device-memory', '24', '--seq-length', '512', '--json').stdout,
    );
    expect(json.deviceMemory.fits).toHaveLength(1);
    expect(json.deviceMemory.fits[0]).toMatchObject({ seqLength: 512, batchSize: Number(at512[1]) });
    const adam = run(
      '--model',
      'llama3-8b',
      '--device-memory',
      '24',
      '--method',
      'adam',
      '--seq-length',
      '512',
    );
    expect(adam.stdout).toMatch(/^512 +none/m);
    expect(run('--model', 'llama3-8b', '--device-memory', '24', '--method', 'lora').stderr).toMatch(
      /--method.*badam or adam/,
    );
    expect(run('--config', configDir('roberta-large'), '--device-memory', '24').stderr).toMatch(
      /Llama-family decoder/,
    );
  });

  it('--json gives the numbers for scripts', () => {
    const { stdout } = run('--model', 'tinyllama-1.1b', '--json', '--include-lm-head');
    const json = JSON.parse(stdout);
    expect(json.parameters).toBe(1_100_048_384);
    expect(json.blocks.count).toBe(23);
    expect(json.estimates.adam.total).toBe(18 * 1_100_048_384 + json.estimates.adam.activations);
  });

  it('errors name the problem and exit non-zero', () => {
    const unknown = run('--model', 'llama3-8b', '--swich-mode', 'x');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/Unknown option '--swich-mode'/);
    expect(unknown.stderr).toMatch(/badam-estimate --help/);
    expect(run().stderr).toMatch(/pass --config path\/to\/config.json or --model <name>/);
    expect(run('--model', 'llama-9b').stderr).toMatch(/--model must be one of llama3-8b, .*got "llama-9b"/);
    expect(run('--config', join(scratch, 'missing.json'))).toMatchObject({ code: 1 });
    expect(run('--config', join(scratch, 'missing.json')).stderr).toMatch(
      /cannot read .*missing.json: ENOENT/,
    );
    const broken = join(scratch, 'broken.json');
    writeFileSync(broken, '{"model_type": "llama",');
    expect(run('--config', broken).stderr).toMatch(/broken.json is not valid JSON/);
    expect(run('--config', configDir('gpt2')).stderr).toMatch(/model_type must be one of .*got "gpt2"/);
    expect(run('--model', 'llama3-8b', '--blocks', 'rows').stderr).toMatch(
      /--blocks must be one of layer, module, matrix/,
    );
    expect(run('--model', 'llama3-8b', '--dtype', 'int4').stderr).toMatch(/--dtype must be one of/);
    expect(run('--model', 'llama3-8b', '--batch-size', '0').stderr).toMatch(
      /--batch-size must be a positive integer, got "0"/,
    );
    expect(run('--model', 'llama3-8b', '--update-ratio', '2').stderr).toMatch(
      /--update-ratio must be a number in \(0, 1\]/,
    );
  });

  it('the built bin runs as a program', () => {
    const bin = fileURLToPath(new URL('../dist/cli/badam-estimate.js', import.meta.url));
    expect(existsSync(bin), 'build @badam/core first (pnpm build)').toBe(true);
    const result = spawnSync(process.execPath, [bin, '--model', 'llama3-8b'], { encoding: 'utf8' });
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/BAdam \(D = 32\)/);
    const bad = spawnSync(process.execPath, [bin, '--nope'], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });
});

describe('badam-estimate on a hostile config.json', () => {
  it('refuses sizes far beyond any model (num_hidden_layers 1e6, 1e9) at once, naming the field', () => {
    for (const layers of [1e6, 1e9]) {
      const path = join(scratch, `layers-${layers}.json`);
      writeFileSync(
        path,
        JSON.stringify({
          ...JSON.parse(readFileSync(join(configDir('llama3-8b'), 'config.json'), 'utf8')),
          num_hidden_layers: layers,
        }),
      );
      const began = performance.now();
      const { code, stderr } = run('--config', path);
      expect(performance.now() - began).toBeLessThan(15_000); // 1e6 layers hung, 1e9 aborted
      expect(code).toBe(2);
      expect(stderr).toContain(
        `num_hidden_layers must be at most 1,024, got ${layers} (far beyond any published model`,
      );
    }
  });

  it('refuses a named pipe as --config instead of reading it forever', () => {
    const fifo = join(scratch, 'config-fifo.json');
    const made = spawnSync('mkfifo', [fifo]);
    if (made.status !== 0) return; // no mkfifo on this system
    const { code, stderr } = run('--config', fifo);
    expect(code).toBe(1);
    expect(stderr).toContain('not a regular file (a named pipe or a device is never read)');
  });
});
