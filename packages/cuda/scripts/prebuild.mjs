// Runs before `pnpm pack` / `npm publish` (prepack): puts the addon built here into the package as
// prebuilds/<platform>-<arch>/badam_cuda.napi.glibc.node, prebuildify's layout, which node-gyp-build loads
// with no install script, no compiler and no download. Built with nvcc where the packing machine has CUDA
// (cudart linked statically, cuBLAS opened at run time), so the one binary runs kernels on a GPU and still
// loads, with its CPU device, on a machine without CUDA; a CPU-only build ships its reason beside it.
// libbadam_gloo.so (multi-process training on Gloo) goes beside it when it was built.
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const release = join(root, 'build', 'Release');
const built = join(release, 'badam_cuda.node');
if (!existsSync(built)) await import('./build-addon.mjs');
if (!existsSync(built)) {
  const note = join(release, 'unavailable.txt');
  throw new Error(
    `@badam/cuda: no addon to pack (${existsSync(note) ? readFileSync(note, 'utf8').trim() : 'the build made none'}); ` +
      'packing needs the addon: install g++ (and the CUDA toolkit for the GPU build) and build the package first',
  );
}
const platform = `${process.platform}-${process.arch}`;
const dir = join(root, 'prebuilds', platform);
rmSync(join(root, 'prebuilds'), { recursive: true, force: true });
mkdirSync(dir, { recursive: true });
// glibc: node-gyp-build then skips it on musl (Alpine), where it would not load.
const file = `badam_cuda.napi${process.platform === 'linux' ? '.glibc' : ''}.node`;
const copies = [[built, file]];
const cpuOnly = join(release, 'cuda-unavailable.txt');
if (existsSync(cpuOnly)) copies.push([cpuOnly, 'cuda-unavailable.txt']);
// Gloo's collectives live in a library of their own beside the addon, which opens it at run time (where
// libgloo is installed); without it, the note that says why.
for (const name of ['libbadam_gloo.so', 'gloo-unavailable.txt']) {
  if (existsSync(join(release, name))) copies.push([join(release, name), name]);
}
for (const [from, name] of copies) {
  copyFileSync(from, join(dir, `${name}.tmp`));
  renameSync(join(dir, `${name}.tmp`), join(dir, name));
}
console.log(
  `@badam/cuda: packed prebuilds/${platform}/${file} (${existsSync(cpuOnly) ? 'CPU device only' : 'CUDA and CPU devices'})`,
);
