// Runs before `pnpm pack` / `npm publish` (prepack): puts the addon built here into the package as
// prebuilds/<platform>-<arch>/badam_native.napi.glibc.node, prebuildify's layout, which node-gyp-build
// loads with no install script, no compiler and no download. One Node-API build serves every Node >= 20.
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const built = join(root, 'build', 'Release', 'badam_native.node');
if (!existsSync(built)) await import('./build-addon.mjs');
if (!existsSync(built)) {
  const note = join(root, 'build', 'Release', 'unavailable.txt');
  throw new Error(
    `@badam/native: no addon to pack (${existsSync(note) ? readFileSync(note, 'utf8').trim() : 'the build made none'}); ` +
      'packing needs the addon: install g++ and build the package first',
  );
}
const dir = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
rmSync(join(root, 'prebuilds'), { recursive: true, force: true });
mkdirSync(dir, { recursive: true });
// glibc: node-gyp-build then skips it on musl (Alpine), where it would not load.
const file = `badam_native.napi${process.platform === 'linux' ? '.glibc' : ''}.node`;
const target = join(dir, file);
copyFileSync(built, `${target}.tmp`);
renameSync(`${target}.tmp`, target);
console.log(`@badam/native: packed prebuilds/${process.platform}-${process.arch}/${file}`);
