// Builds the native CPU kernels with g++ (no download, no node-gyp): build/badam_native.node.
// Without a compiler the package still installs; loading it then says what is missing.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'build');
mkdirSync(out, { recursive: true });
const missing = join(out, 'unavailable.txt');
rmSync(missing, { force: true });

const candidates = [
  join(dirname(process.execPath), '..', 'include', 'node'),
  process.env.NODE_INCLUDE_DIR,
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
    join(out, 'badam_native.node'),
  ];
  try {
    execFileSync(cxx, args, { stdio: ['ignore', 'inherit', 'inherit'] });
    console.log(`@badam/native: built build/badam_native.node with ${cxx}`);
  } catch (error) {
    fail(
      `${cxx} failed or is not installed (${error.message.split('\n')[0]}); install g++ to build the native kernels`,
    );
  }
}
