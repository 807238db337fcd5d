// The package's `install` script, as node-gyp-build's: nothing to do when an addon for this machine loads
// (the prebuilt one in prebuilds/<platform>-<arch>/, or an earlier build); otherwise build it from the
// shipped sources. It never fails the install: without the addon the package still loads and says why.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

function loads() {
  try {
    require(require('node-gyp-build').path(root));
    return true;
  } catch {
    return false;
  }
}

// In the repository (TypeScript sources beside the package), `pnpm build` makes the addon instead.
if (!existsSync(join(root, 'tsconfig.json')) && !loads()) {
  execFileSync(process.execPath, [join(root, 'scripts', 'build-addon.mjs')], { stdio: 'inherit' });
}
