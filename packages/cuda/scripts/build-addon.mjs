// Builds the @badam/cuda addon from the shipped sources into build/Release/badam_cuda.node (node-gyp's
// layout, where node-gyp-build looks before the prebuilds), with nothing downloaded:
//   - with nvcc (CUDA 12 or 13) when it is found: the CUDA device for sm_80 and sm_90 plus PTX, cudart
//     linked statically, cuBLAS loaded at run time with dlopen;
//   - with g++ alone otherwise (or with BADAM_CUDA=0): the CPU device only, whose kernels are the references.
// Both builds compile @badam/native's SGEMM (native/gemm.cc, read from that package, not copied) for the CPU
// device's GEMMs, with native's own flags (-O3; its AVX-512 / AVX2 micro-kernels are chosen at run time)
// and hidden visibility, so its symbols stay inside this addon when badam_native.node is loaded too.
// Without g++ nothing fails here; build/Release/unavailable.txt says why, and loading the package repeats
// it with what to install. A CPU-only build leaves build/Release/cuda-unavailable.txt with the reason.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cudaHostSources, cudaSources, engineSources, hostSources } from './addon-sources.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'native');
// @badam/native's sources (a dependency: its package ships native/ for its own install build).
function findNativeSources() {
  try {
    return join(dirname(createRequire(import.meta.url).resolve('@badam/native/package.json')), 'native');
  } catch {
    return undefined;
  }
}
// Unresolved, the build stops below and names where it looked.
const nativeSrc = findNativeSources() ?? join(root, 'node_modules', '@badam', 'native', 'native');
const out = join(root, 'build', 'Release');
const obj = join(root, 'build', 'obj');
mkdirSync(obj, { recursive: true });
mkdirSync(out, { recursive: true });
const target = join(out, 'badam_cuda.node');
// Linked beside the target and renamed over it, so a failed build never leaves half an addon.
const partial = `${target}.tmp`;
const notes = { unavailable: join(out, 'unavailable.txt'), noCuda: join(out, 'cuda-unavailable.txt') };
for (const f of [...Object.values(notes), target]) rmSync(f, { force: true });

const cxx = process.env.CXX ?? 'g++';
const nodeInclude = [
  join(dirname(process.execPath), '..', 'include', 'node'),
  process.env.NODE_INCLUDE_DIR,
  process.env.npm_config_nodedir && join(process.env.npm_config_nodedir, 'include', 'node'),
]
  .filter(Boolean)
  .find((dir) => existsSync(join(dir, 'node_api.h')));
const run = (cmd, args) => execFileSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'] });
const common = [
  '-std=c++17',
  '-O2',
  '-fPIC',
  '-DNODE_GYP_MODULE_NAME=badam_cuda',
  `-I${nodeInclude}`,
  `-I${nativeSrc}`,
];
// @badam/native's SGEMM, as packages/native/scripts/build-addon.mjs compiles it.
const sgemmSource = join(nativeSrc, 'gemm.cc');
const sgemmFlags = ['-std=c++17', '-O3', '-fPIC', '-pthread', '-fvisibility=hidden'];
// The CPU engine: -O3 (its portable kernels rely on the compiler's vectoriser), no -march (AVX-512 code is in
// functions and files that say so, run only on CPUs that have it), and no multiply-add contracted where the
// source has a multiply and an add (g++ contracts by default where FMA exists: the AVX-512 AdamW would then
// round differently from its reference, which it matches bit for bit).
const engineFlags = [...common.map((f) => (f === '-O2' ? '-O3' : f)), '-pthread', '-ffp-contract=off'];

/** The CPU engine's objects, one per source (build/obj/cpu_engine_*.o). */
function buildEngine() {
  return engineSources.map((file) => {
    const o = join(obj, `${file.replace('/', '_')}.o`);
    run(cxx, [...engineFlags, '-c', join(src, file), '-o', o]);
    return o;
  });
}

function findCuda() {
  if (process.env.BADAM_CUDA === '0') return { reason: 'BADAM_CUDA=0 asked for a CPU-only build' };
  const homes = [process.env.CUDA_HOME, process.env.CUDA_PATH, '/usr/local/cuda'].filter(Boolean);
  for (const home of homes) {
    const nvcc = join(home, 'bin', 'nvcc');
    if (
      existsSync(nvcc) &&
      existsSync(join(home, 'include', 'cuda_runtime.h')) &&
      existsSync(join(home, 'lib64', 'libcudart_static.a'))
    ) {
      return { home, nvcc };
    }
  }
  return {
    reason: `nvcc with cuda_runtime.h and libcudart_static.a was not found in ${homes.join(', ')} (set CUDA_HOME)`,
  };
}

function buildCuda({ home, nvcc }) {
  const objects = [];
  for (const file of [...hostSources, ...cudaHostSources]) {
    const o = join(obj, `${file}.o`);
    run(cxx, [...common, '-DBADAM_WITH_CUDA', `-I${join(home, 'include')}`, '-c', join(src, file), '-o', o]);
    objects.push(o);
  }
  const sgemmObject = join(obj, 'native_gemm.cc.o');
  run(cxx, [...sgemmFlags, '-c', sgemmSource, '-o', sgemmObject]);
  objects.push(sgemmObject, ...buildEngine());
  const gencode = ['80', '90'].flatMap((sm) => ['-gencode', `arch=compute_${sm},code=sm_${sm}`]);
  for (const file of cudaSources) {
    const cuObject = join(obj, file.replace(/\.cu$/, '.o'));
    run(nvcc, [
      '-std=c++17',
      '-O3',
      '-Xcompiler',
      '-fPIC',
      '-DBADAM_WITH_CUDA',
      ...gencode,
      '-gencode',
      'arch=compute_90,code=compute_90',
      '-c',
      join(src, file),
      '-o',
      cuObject,
    ]);
    objects.push(cuObject);
  }
  run(cxx, [
    '-shared',
    '-o',
    partial,
    ...objects,
    join(home, 'lib64', 'libcudart_static.a'),
    '-ldl',
    '-lpthread',
    '-lrt',
  ]);
  renameSync(partial, target);
}

function buildCpu() {
  const sgemmObject = join(obj, 'native_gemm.cc.o');
  run(cxx, [...sgemmFlags, '-c', sgemmSource, '-o', sgemmObject]);
  run(cxx, [
    ...common,
    '-shared',
    '-pthread',
    ...hostSources.map((f) => join(src, f)),
    sgemmObject,
    ...buildEngine(),
    '-o',
    partial,
  ]);
  renameSync(partial, target);
}

if (nodeInclude === undefined) {
  writeFileSync(
    notes.unavailable,
    "Node's headers (node_api.h) were not found next to node; set NODE_INCLUDE_DIR\n",
  );
  console.warn('@badam/cuda: not built: Node headers not found');
} else if (!existsSync(sgemmSource)) {
  writeFileSync(
    notes.unavailable,
    `@badam/native's SGEMM source was not found (${sgemmSource}); install @badam/cuda's dependency @badam/native\n`,
  );
  console.warn("@badam/cuda: not built: @badam/native's sources not found");
} else {
  const cuda = findCuda();
  let built = false;
  if (cuda.nvcc) {
    try {
      console.log(`@badam/cuda: building with ${cuda.nvcc} (sm_80, sm_90, PTX) ...`);
      buildCuda(cuda);
      built = true;
      console.log('@badam/cuda: built build/Release/badam_cuda.node with the CUDA device');
    } catch (error) {
      rmSync(partial, { force: true });
      cuda.reason = `the CUDA build failed (${String(error.message).split('\n')[0]})`;
    }
  }
  if (!built) {
    writeFileSync(notes.noCuda, `${cuda.reason}\n`);
    try {
      buildCpu();
      console.log(`@badam/cuda: built build/Release/badam_cuda.node, CPU device only: ${cuda.reason}`);
    } catch (error) {
      rmSync(partial, { force: true });
      writeFileSync(
        notes.unavailable,
        `${cxx} failed or is not installed (${String(error.message).split('\n')[0]}); install a C++ compiler (g++)\n`,
      );
      console.warn('@badam/cuda: not built: no C++ compiler');
    }
  }
}
