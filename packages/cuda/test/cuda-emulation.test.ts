import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { llamaKernelSources } from '../scripts/addon-sources.mjs';

// The CUDA Llama kernels cannot run here (no GPU), but their launches, tiling, shared memory, warp shuffles
// and block reductions can: test/emulation/cuda_runtime.h runs the kernel files (scripts/addon-sources.mjs) on fibers, and
// llama_kernels_check.cc compares every kernel with the CPU reference on shapes with partial tiles, odd head
// dims, GQA groups, padding and an empty row; the tensor-core attention (WMMA, emulated by mma.h with a
// whole tile in every thread) runs at head dims 64 and 128 beside the SIMT one. What stays untested is CUDA
// itself: the bf16 intrinsics, the real fragment layouts, memory model and timing (device-check.sh covers
// those on a GPU).
const native = fileURLToPath(new URL('../native/', import.meta.url));
const emulation = fileURLToPath(new URL('./emulation/', import.meta.url));
const hasCompiler = spawnSync(process.env.CXX ?? 'g++', ['--version']).status === 0;
const dir = mkdtempSync(join(tmpdir(), 'badam-cuda-emulation-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The two CUDA spellings C++ cannot parse, rewritten for the emulator. */
function emulatable(source: string): { code: string; launches: number } {
  let launches = 0;
  const code = source
    .replace(/(\w+)<<<([\s\S]*?)>>>\(/g, (_, kernel: string, config: string) => {
      launches++;
      return `emu::launcher(${kernel}, ${config})(`;
    })
    .replaceAll('extern __shared__ float smem[];', 'float* smem = emu::dynamic_shared();');
  return { code, launches };
}

describe.skipIf(!hasCompiler)(
  'the CUDA Llama kernels, emulated on the CPU, against the CPU references',
  () => {
    it('every kernel matches its reference', () => {
      // The kernel files and the private headers they include (.cuh), rewritten into `dir`, which comes
      // before native/ on the include path.
      const headers = readdirSync(native).filter((f) => f.endsWith('.cuh'));
      let launches = 0;
      const sources: string[] = [];
      for (const file of [...llamaKernelSources, ...headers]) {
        const rewritten = emulatable(readFileSync(join(native, file), 'utf8'));
        expect(rewritten.code).not.toContain('<<<');
        expect(rewritten.code).not.toContain('extern __shared__');
        launches += rewritten.launches;
        const target = join(dir, file.endsWith('.cu') ? `${file}.cc` : file);
        writeFileSync(target, rewritten.code);
        if (file.endsWith('.cu')) sources.push(target);
      }
      expect(launches).toBeGreaterThanOrEqual(15);
      const binary = join(dir, 'check');
      const build = spawnSync(
        process.env.CXX ?? 'g++',
        [
          '-std=c++17',
          '-O2',
          '-Wno-unknown-pragmas',
          '-fno-strict-aliasing', // shared memory is one float buffer that 16-bit tiles are cast over, as in CUDA
          `-I${emulation}`, // its cuda_runtime.h before any real one
          `-I${dir}`, // the rewritten headers before native/'s
          `-I${native}`,
          ...sources,
          join(emulation, 'llama_kernels_check.cc'),
          join(native, 'llama_reference.cc'),
          '-o',
          binary,
        ],
        { encoding: 'utf8' },
      );
      expect(build.status, build.stderr).toBe(0);
      const run = spawnSync(binary, { encoding: 'utf8' });
      expect(run.status, run.stdout + run.stderr).toBe(0);
      expect(run.stdout).toContain('all emulated kernels match the references');
      for (const kernel of [
        'attention out',
        'attentionBackward dk',
        'crossEntropy logits',
        'rmsNormBackward dx',
        'rope',
        'empty inputs launch nothing',
      ])
        expect(run.stdout).toMatch(new RegExp(`^ok +${kernel}`, 'm'));
      // Both attention paths ran: the WMMA kernels (test/emulation/mma.h) and the SIMT ones they replace.
      for (const path of ['tensor cores', 'simt'])
        for (const kernel of ['attention out', 'attentionBackward dq', 'attentionBackward dk'])
          expect(run.stdout).toMatch(new RegExp(`^ok +${kernel}, .* \\[${path}\\]`, 'm'));
    }, 300_000);
  },
);
