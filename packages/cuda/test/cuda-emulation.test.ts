import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { llamaKernelSources } from '../scripts/addon-sources.mjs';

// The CUDA Llama kernels cannot run here (no GPU), but their launches, tiling, shared memory, warp shuffles
// and block reductions can: test/emulation/cuda_runtime.h runs the kernel files (scripts/addon-sources.mjs)
// on fibers, and llama_kernels_check.cc compares every kernel with the CPU reference on shapes with partial
// tiles, odd head dims, GQA groups, padding, an empty row and fused q / k / v rows; the tensor-core attention
// (WMMA, emulated by mma.h with a whole tile in every thread) runs at head dims 64 and 128 beside the SIMT
// one, with the device's opt-in shared memory at an H100's 227 KiB and at the 99 KiB of sm_86 / sm_89 cards
// (RTX 3090 / 4090, A10, L4), where it takes 32-key tiles. What stays untested is CUDA itself: the bf16
// intrinsics, the real fragment layouts, memory model and timing (device-check.sh covers those on a GPU).
//
// The binary is compiled once per set of sources (their hash names it, under node_modules/.cache), the
// translation units in parallel, and the two shared memory limits run as two processes at once.
const root = fileURLToPath(new URL('..', import.meta.url));
const native = join(root, 'native');
const emulation = join(root, 'test', 'emulation');
const cxx = process.env.CXX ?? 'g++';
const hasCompiler = spawnSync(cxx, ['--version']).status === 0;
const H100_OPTIN = 227 * 1024;
const SM86_OPTIN = 99 * 1024;

/** The two CUDA spellings C++ cannot parse, rewritten for the emulator. */
function emulatable(source: string): { code: string; launches: number } {
  let launches = 0;
  const code = source
    .replace(/(\w+(?:<[\w, ]*>)?)<<<([\s\S]*?)>>>\(/g, (_, kernel: string, config: string) => {
      launches++;
      return `emu::launcher(${kernel}, ${config})(`;
    })
    .replaceAll('extern __shared__ float smem[];', 'float* smem = emu::dynamic_shared();');
  return { code, launches };
}

const FLAGS = [
  '-std=c++17',
  '-O2',
  '-Wno-unknown-pragmas',
  '-fno-strict-aliasing', // shared memory is one float buffer that 16-bit tiles are cast over, as in CUDA
];

/** Runs a command; resolves with its status and output. */
function run(cmd: string, args: readonly string[]): Promise<{ status: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      out += d;
    });
    child.on('close', (status) => resolve({ status, out }));
  });
}

/** The emulated check, built from the rewritten kernel files, or the cached binary of the same inputs. */
async function buildCheck(): Promise<{ binary: string; launches: number; cached: boolean }> {
  const headers = readdirSync(native).filter((f) => f.endsWith('.cuh') || f.endsWith('.h'));
  const emulated = readdirSync(emulation);
  const hash = createHash('sha256');
  hash.update(`${spawnSync(cxx, ['--version'], { encoding: 'utf8' }).stdout}${FLAGS.join(' ')}`);
  for (const file of [...llamaKernelSources, ...headers, 'llama_reference.cc'])
    hash.update(file).update(readFileSync(join(native, file)));
  for (const file of emulated) hash.update(file).update(readFileSync(join(emulation, file)));
  const key = hash.digest('hex').slice(0, 16);
  const cache = join(root, 'node_modules', '.cache', 'badam-cuda-emulation');
  const binary = join(cache, `check-${key}`);
  let launches = 0;
  const rewritten = new Map<string, string>();
  for (const file of [...llamaKernelSources, ...headers.filter((f) => f.endsWith('.cuh'))]) {
    const r = emulatable(readFileSync(join(native, file), 'utf8'));
    expect(r.code, file).not.toContain('<<<');
    expect(r.code, file).not.toContain('extern __shared__');
    launches += r.launches;
    rewritten.set(file, r.code);
  }
  if (existsSync(binary)) return { binary, launches, cached: true };
  const dir = join(tmpdir(), `badam-cuda-emulation-${key}-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  try {
    for (const [file, code] of rewritten)
      writeFileSync(join(dir, file.endsWith('.cu') ? `${file}.cc` : file), code);
    const units = [
      ...llamaKernelSources.map((f) => join(dir, `${f}.cc`)),
      join(emulation, 'llama_kernels_check.cc'),
      join(native, 'llama_reference.cc'),
    ];
    // The emulator's headers first, then the rewritten .cuh, then native/.
    const includes = [`-I${emulation}`, `-I${dir}`, `-I${native}`];
    const objects = units.map((_, i) => join(dir, `${i}.o`));
    const queue = units.map((u, i) => () => run(cxx, [...FLAGS, ...includes, '-c', u, '-o', objects[i]!]));
    const failures: string[] = [];
    await Promise.all(
      Array.from({ length: Math.max(1, availableParallelism()) }, async () => {
        for (let job = queue.shift(); job !== undefined; job = queue.shift()) {
          const r = await job();
          if (r.status !== 0) failures.push(r.out);
        }
      }),
    );
    expect(failures.join('\n'), 'compiling the emulated kernels').toBe('');
    const link = await run(cxx, [...objects, '-o', join(dir, 'check')]);
    expect(link.status, link.out).toBe(0);
    mkdirSync(cache, { recursive: true });
    // Binaries of older sources are of no more use.
    for (const old of readdirSync(cache))
      if (old.startsWith('check-')) rmSync(join(cache, old), { force: true });
    renameSync(join(dir, 'check'), binary);
    return { binary, launches, cached: false };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe.skipIf(!hasCompiler)(
  'the CUDA Llama kernels, emulated on the CPU, against the CPU references',
  () => {
    it('every kernel matches its reference, with 227 KiB and 99 KiB of shared memory per block', async () => {
      const { binary, launches } = await buildCheck();
      expect(launches).toBeGreaterThanOrEqual(20);
      const [h100, sm86] = await Promise.all([
        run(binary, ['--shared-optin', String(H100_OPTIN)]),
        run(binary, ['--shared-optin', String(SM86_OPTIN), '--only', 'attention']),
      ]);
      for (const result of [h100, sm86]) {
        expect(result.status, result.out).toBe(0);
        expect(result.out).toContain('all emulated kernels match the references');
      }
      for (const kernel of [
        'attention out',
        'attentionBackward dk',
        'crossEntropy logits',
        'rmsNormBackward dx',
        'addRmsNorm out',
        'swigluBackward dGateUp',
        'rope bf16, q and k of fused rows',
        'empty inputs launch nothing',
      ])
        expect(h100.out).toMatch(new RegExp(`^ok +${kernel}`, 'm'));
      // Both attention paths ran, the tensor cores with 64-key tiles on the H100's shared memory and 32-key
      // tiles on the sm_86's at head dim 128; with fused q / k / v rows; dk / dv split over GQA groups.
      for (const path of ['tensor cores, 64-key tiles', 'tensor cores, 32-key tiles', 'simt'])
        expect(h100.out).toMatch(new RegExp(`^ok +attentionBackward .*\\[${path}\\]`, 'm'));
      expect(sm86.out).toMatch(/^ok +attention out, .*d 128, .*\[tensor cores, 32-key tiles\]/m);
      expect(sm86.out).not.toMatch(/d 128,.*\[tensor cores, 64-key tiles\]/);
      expect(h100.out).toMatch(/^ok +attentionBackward dq \| dk \| dv, .*fused qkv rows.*split\(s\)/m);
      expect(h100.out).toMatch(/dk \/ dv in [2-9] split\(s\)/);
    }, 240_000);
  },
);
