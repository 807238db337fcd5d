import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The version in the nearest package.json above a module (pass `import.meta.url`): what a command's
 * `--version` prints, the same whether it runs from `dist/` or from its sources.
 *
 * @example
 * ```ts
 * if (argv.includes('--version')) console.log(`badam-llama ${packageVersion(import.meta.url)}`);
 * ```
 */
export function packageVersion(moduleUrl: string): string {
  let dir = dirname(fileURLToPath(moduleUrl));
  for (;;) {
    const path = join(dir, 'package.json');
    if (existsSync(path)) return (JSON.parse(readFileSync(path, 'utf8')) as { version: string }).version;
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`no package.json above ${fileURLToPath(moduleUrl)}`);
    dir = parent;
  }
}
