// Builds the native CPU kernels from the shipped sources with g++ (no download, no python, no make) into
// build/Release/badam_native.node, node-gyp's layout, where node-gyp-build looks before the prebuilds.
// Without a compiler nothing fails here; build/Release/unavailable.txt says why, and loading the package
// repeats it with what to install.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'build', 'Release');
mkdirSync(out, { recursive: true });
const target = join(out, 'badam_native.node');
const missing = join(out, 'unavailable.txt');
rmSync(missing, { force: true });

const candidates = [
  join(dirname(process.execPath), '..', 'include', 'node'),
  process.env.NODE_INCLUDE_DIR,
  process.env.npm_config_nodedir && join(process.env.npm_config_nodedir, 'include', 'node'),
].filter(Boolean);
const include = candidates.find((dir) => existsSync(join(dir, 'node_api.h')));
const cxx = process.env.CXX ?? 'g++';
function fail(reason) {
  writeFileSync(missing, `${reason}\n`);
  console.warn(`@badam/native: not built: ${reason}`);
}
if (include === undefined) {
  fail(`Node's headers (node_api.h) were not found in ${candidates.join(' or ')}; set NODE_INCLUDE_DIR`);
} else {
  // Built beside the target and renamed over it, so a failed build never leaves half an addon.
  const partial = `${target}.tmp`;
  const args = [
    '-std=c++17',
    '-O3',
    '-fPIC',
    '-shared',
    '-pthread',
    '-DNODE_GYP_MODULE_NAME=badam_native',
    `-I${include}`,
    join(root, 'native', 'addon.cc'),
    join(root, 'native', 'gemm.cc'),
    '-o',
    partial,
  ];
  try {
    execFileSync(cxx, args, { stdio: ['ignore', 'inherit', 'inherit'] });
    renameSync(partial, target);
    console.log(`@badam/native: built build/Release/badam_native.node with ${cxx}`);
  } catch (error) {
    rmSync(partial, { force: true });
    fail(
      `${cxx} failed or is not installed (${error.message.split('\n')[0]}); install a C++ compiler (g++) to build the native kernels`,
    );
  }
}
