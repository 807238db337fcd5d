import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

// The CUDA device loads cuBLAS with dlopen (native/cublas_loader.cc). A GPU machine may have CUDA 13's
// libcublas.so.13 in the toolkit's folder without an ldconfig entry; the loader then looks under
// $CUDA_HOME/lib64 (and /usr/local/cuda/lib64, ...), loading libcublasLt.so.13 from the same folder first.
// Checked here with a stand-in pair of libraries that export the entry points the loader binds.
const native = fileURLToPath(new URL('../native/', import.meta.url));
const cxx = process.env.CXX ?? 'g++';
const hasCompiler = spawnSync(cxx, ['--version']).status === 0;
const dir = mkdtempSync(join(tmpdir(), 'badam-cublas-loader-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const LT = 'extern "C" int cublasLtStandIn() { return 7; }\n';
const CUBLAS = `extern "C" int cublasLtStandIn();
extern "C" {
int cublasCreate_v2(void** h) { *h = reinterpret_cast<void*>(1); return cublasLtStandIn() == 7 ? 0 : 1; }
int cublasDestroy_v2(void*) { return 0; }
int cublasSetStream_v2(void*, void*) { return 0; }
int cublasGetVersion_v2(void*, int* v) { *v = 130042; return 0; }
int cublasGemmEx() { return 0; }
int cublasSetWorkspace_v2(void*, void*, unsigned long) { return 0; }
}
`;
const MAIN = `#include <cstdio>
#include "cublas_loader.h"
int main() {
  std::string error;
  const badam::cublas::Api* api = badam::cublas::load(&error);
  if (api == nullptr) { std::printf("not loaded: %s\\n", error.c_str()); return 1; }
  void* h = nullptr;
  int v = 0;
  if (api->create(&h) != 0 || api->get_version(h, &v) != 0) { std::printf("calls failed\\n"); return 1; }
  std::printf("loaded cublas %d\\n", v);
  return 0;
}
`;

function build(args: string[]): void {
  const r = spawnSync(cxx, args, { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
}

describe.skipIf(!hasCompiler)('the cuBLAS loader', () => {
  it('finds libcublas.so.13 (and its libcublasLt) under CUDA_HOME when the loader path has none', () => {
    const lib = join(dir, 'cuda', 'lib64');
    mkdirSync(lib, { recursive: true });
    writeFileSync(join(dir, 'lt.cc'), LT);
    writeFileSync(join(dir, 'cublas.cc'), CUBLAS);
    writeFileSync(join(dir, 'main.cc'), MAIN);
    build([
      '-shared',
      '-fPIC',
      join(dir, 'lt.cc'),
      '-o',
      join(lib, 'libcublasLt.so.13'),
      '-Wl,-soname,libcublasLt.so.13',
    ]);
    build([
      '-shared',
      '-fPIC',
      join(dir, 'cublas.cc'),
      '-o',
      join(lib, 'libcublas.so.13'),
      '-Wl,-soname,libcublas.so.13',
      `-L${lib}`,
      '-l:libcublasLt.so.13',
    ]);
    const binary = join(dir, 'main');
    build([
      '-std=c++17',
      `-I${native}`,
      join(dir, 'main.cc'),
      join(native, 'cublas_loader.cc'),
      '-ldl',
      '-o',
      binary,
    ]);
    const env = { ...process.env, LD_LIBRARY_PATH: '', CUDA_HOME: join(dir, 'cuda'), CUDA_PATH: '' };
    const run = spawnSync(binary, { encoding: 'utf8', env });
    expect(run.status, run.stdout + run.stderr).toBe(0);
    // The stand-in (130042), or a real cuBLAS where one is on the loader's path already.
    expect(run.stdout).toMatch(/^loaded cublas \d+/);
    const without = spawnSync(binary, { encoding: 'utf8', env: { ...env, CUDA_HOME: '' } });
    if (without.status !== 0) expect(without.stdout).toMatch(/libcublas\.so\.13.*LD_LIBRARY_PATH/);
  });
});
