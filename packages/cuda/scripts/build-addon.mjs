// Builds the @badam/cuda addon from the shipped sources into build/Release/badam_cuda.node (node-gyp's
// layout, where node-gyp-build looks before the prebuilds), with nothing downloaded:
//   - with nvcc (CUDA 12 or 13) when it is found: the CUDA device with SASS for sm_80, sm_86, sm_89 and sm_90
//     (A100 / A10 / RTX 3090, L4 / L40S / RTX 4090, H100 / H200), PTX for compute_90 (which every newer card,
//     Blackwell included, compiles at load time) and PTX for the newest architecture this nvcc knows; cudart
//     linked statically, cuBLAS loaded at run time with dlopen;
//   - with g++ alone otherwise (or with BADAM_CUDA=0): the CPU device only, whose kernels are the references.
// Both builds compile @badam/native's SGEMM (native/gemm.cc, read from that package, not copied) for the CPU
// device's GEMMs, with native's own flags (-O3; its AVX-512 / AVX2 micro-kernels are chosen at run time)
// and hidden visibility, so its symbols stay inside this addon when badam_native.node is loaded too.
// Gloo (Debian/Ubuntu: libgloo-dev), where its headers and library are found, goes into a library of its own,
// build/Release/libbadam_gloo.so, which the addon opens at run time: the addon links no Gloo, so it loads
// where Gloo is absent; without Gloo, build/Release/gloo-unavailable.txt says why (BADAM_GLOO=0 skips it).
// Without g++ nothing fails here; build/Release/unavailable.txt says why, and loading the package repeats
// it with what to install. A CPU-only build leaves build/Release/cuda-unavailable.txt with the reason.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cudaHostSources, cudaSources, engineSources, glooSources, hostSources } from './addon-sources.mjs';

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
const notes = {
  unavailable: join(out, 'unavailable.txt'),
  noCuda: join(out, 'cuda-unavailable.txt'),
  noGloo: join(out, 'gloo-unavailable.txt'),
};
const glooTarget = join(out, 'libbadam_gloo.so');
for (const f of [...Object.values(notes), target, glooTarget]) rmSync(f, { force: true });

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

/** The CPU engine's objects, one per source (build/obj/cpu_engine_*.o), and the jobs that compile them. */
function engineBuild() {
  const objects = [];
  const jobs = [];
  for (const file of engineSources) {
    const o = join(obj, `${file.replace('/', '_')}.o`);
    jobs.push(() => runAsync(cxx, [...engineFlags, '-c', join(src, file), '-o', o]));
    objects.push(o);
  }
  return { objects, jobs };
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

/** Runs `cmd args` with its output shown; resolves on exit 0, rejects naming the command otherwise. */
function runAsync(cmd, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`${cmd} ${args.at(-3)} exited with ${code}`)),
    );
  });
}

/** Runs the jobs (functions returning promises) `width` at a time; rejects with the first failure. */
async function pool(jobs, width) {
  const queue = [...jobs];
  const workers = Array.from({ length: Math.max(1, Math.min(width, queue.length)) }, async () => {
    while (queue.length > 0) await queue.shift()();
  });
  await Promise.all(workers);
}

/**
 * nvcc's -gencode flags: SASS for sm_80, sm_86, sm_89 and sm_90 (those this nvcc knows), PTX for compute_90 and
 * for the newest compute_XX it lists (`nvcc --list-gpu-arch`, CUDA 12.0+).
 */
function gencodeFlags(nvcc) {
  let known = ['compute_80', 'compute_86', 'compute_89', 'compute_90'];
  try {
    known = execFileSync(nvcc, ['--list-gpu-arch'], { encoding: 'utf8' })
      .split(/\s+/)
      .filter((a) => /^compute_\d+$/.test(a));
  } catch {
    // an nvcc without --list-gpu-arch: the four above
  }
  const number = (arch) => Number(arch.replace('compute_', ''));
  const sass = ['80', '86', '89', '90'].filter((sm) => known.includes(`compute_${sm}`));
  const newest = known.reduce((a, b) => (number(b) > number(a) ? b : a), 'compute_90');
  const ptx = [...new Set(['compute_90', newest])];
  return [
    ...sass.flatMap((sm) => ['-gencode', `arch=compute_${sm},code=sm_${sm}`]),
    ...ptx.flatMap((arch) => ['-gencode', `arch=${arch},code=${arch}`]),
  ];
}

async function buildCuda({ home, nvcc }) {
  const objects = [];
  const jobs = [];
  for (const file of [...hostSources, ...cudaHostSources]) {
    const o = join(obj, `${file}.o`);
    jobs.push(() =>
      runAsync(cxx, [
        ...common,
        '-DBADAM_WITH_CUDA',
        `-I${join(home, 'include')}`,
        '-c',
        join(src, file),
        '-o',
        o,
      ]),
    );
    objects.push(o);
  }
  const sgemmObject = join(obj, 'native_gemm.cc.o');
  jobs.push(() => runAsync(cxx, [...sgemmFlags, '-c', sgemmSource, '-o', sgemmObject]));
  objects.push(sgemmObject);
  const engine = engineBuild();
  jobs.push(...engine.jobs);
  objects.push(...engine.objects);
  const gencode = gencodeFlags(nvcc);
  // The kernel files before the host files, the attention ones (the largest) first, so the pool ends together.
  const kernelJobs = [];
  const byCost = [...cudaSources].sort(
    (a, b) => Number(b.startsWith('attention')) - Number(a.startsWith('attention')),
  );
  for (const file of byCost) {
    const cuObject = join(obj, file.replace(/\.cu$/, '.o'));
    kernelJobs.push(() =>
      runAsync(nvcc, [
        '-std=c++17',
        '-O3',
        '-Xcompiler',
        '-fPIC',
        '-DBADAM_WITH_CUDA',
        ...gencode,
        '-c',
        join(src, file),
        '-o',
        cuObject,
      ]),
    );
    objects.push(cuObject);
  }
  await pool([...kernelJobs, ...jobs], availableParallelism());
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

async function buildCpu() {
  const sgemmObject = join(obj, 'native_gemm.cc.o');
  const engine = engineBuild();
  await pool(
    [() => runAsync(cxx, [...sgemmFlags, '-c', sgemmSource, '-o', sgemmObject]), ...engine.jobs],
    availableParallelism(),
  );
  run(cxx, [
    ...common,
    '-shared',
    '-pthread',
    ...hostSources.map((f) => join(src, f)),
    sgemmObject,
    ...engine.objects,
    '-ldl',
    '-o',
    partial,
  ]);
  renameSync(partial, target);
}

function findGloo() {
  if (process.env.BADAM_GLOO === '0') return { reason: 'BADAM_GLOO=0 asked for a build without Gloo' };
  const homes = [process.env.GLOO_HOME, '/usr', '/usr/local'].filter(Boolean);
  for (const home of homes) {
    if (!existsSync(join(home, 'include', 'gloo', 'allgatherv.h'))) continue;
    const libDir = ['lib', 'lib64', `lib/${process.arch === 'x64' ? 'x86_64' : 'aarch64'}-linux-gnu`]
      .map((d) => join(home, d))
      .find((d) => existsSync(join(d, 'libgloo.so')));
    if (libDir !== undefined) return { include: join(home, 'include'), libDir };
  }
  return {
    reason: `Gloo's headers (gloo/allgatherv.h) and libgloo.so were not found in ${homes.join(', ')} (Debian/Ubuntu: apt-get install libgloo-dev; or set GLOO_HOME)`,
  };
}

/** libbadam_gloo.so beside the addon, or gloo-unavailable.txt saying why not. */
function buildGloo() {
  const gloo = findGloo();
  if (gloo.reason === undefined) {
    const partialGloo = `${glooTarget}.tmp`;
    try {
      run(cxx, [
        '-std=c++17',
        '-O2',
        '-fPIC',
        '-shared',
        '-pthread',
        '-fvisibility=hidden',
        `-I${gloo.include}`,
        `-I${src}`,
        ...glooSources.map((f) => join(src, f)),
        `-L${gloo.libDir}`,
        '-lgloo',
        '-o',
        partialGloo,
      ]);
      renameSync(partialGloo, glooTarget);
      console.log('@badam/cuda: built build/Release/libbadam_gloo.so (multi-process training on Gloo)');
      return;
    } catch (error) {
      rmSync(partialGloo, { force: true });
      gloo.reason = `the Gloo build failed (${String(error.message).split('\n')[0]})`;
    }
  }
  writeFileSync(notes.noGloo, `${gloo.reason}\n`);
  console.log(`@badam/cuda: no Gloo: ${gloo.reason}`);
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
      console.log(`@badam/cuda: building with ${cuda.nvcc} (sm_80, sm_86, sm_89, sm_90, PTX) ...`);
      await buildCuda(cuda);
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
      await buildCpu();
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
  if (existsSync(target)) buildGloo();
}
