import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { dependencyProblems } from './workspace-imports.js';

const root = fileURLToPath(new URL('../../..', import.meta.url));

describe("the workspace's arrows", () => {
  it('no package imports an app or another folder by path, and every import is a declared dependency', () => {
    expect(dependencyProblems(root)).toEqual([]);
  });
});

describe('the check itself', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'badam-deps-'));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  /** A workspace of files given by path; package.json values are objects. */
  function workspace(name: string, files: Record<string, string | object>): string {
    const dir = join(scratch, name);
    for (const [path, content] of Object.entries(files)) {
      mkdirSync(dirname(join(dir, path)), { recursive: true });
      writeFileSync(join(dir, path), typeof content === 'string' ? content : JSON.stringify(content));
    }
    return dir;
  }

  const app = { name: '@x/app', dependencies: { '@x/lib': 'workspace:^' } };
  const lib = (extra: object = {}) => ({
    name: '@x/lib',
    dependencies: { '@x/base': 'workspace:^' },
    ...extra,
  });
  const base = { name: '@x/base' };

  it('a clean workspace passes', () => {
    const root = workspace('clean', {
      'apps/app/package.json': app,
      'apps/app/src/main.ts': "import { f } from '@x/lib';\nimport { join } from 'node:path';\n",
      'packages/lib/package.json': lib(),
      'packages/lib/src/index.ts':
        "export { g } from '@x/base';\nimport { readFile } from 'node:fs/promises';\n",
      'packages/base/package.json': base,
      'packages/base/src/index.ts': 'export const g = 1;\n',
    });
    expect(dependencyProblems(root)).toEqual([]);
  });

  it('catches planted faults: an app imported by name or by path, an undeclared import, a stale dependency', () => {
    const root = workspace('planted', {
      'apps/app/package.json': app,
      'apps/app/src/main.ts': "export const data = 1;\nimport { f } from '@x/lib';\n",
      'packages/lib/package.json': lib({ devDependencies: { '@x/app': 'workspace:*' } }),
      'packages/lib/src/index.ts': [
        "import { g } from '@x/base';",
        "import { data } from '@x/app';",
        "import { data as again } from '../../../apps/app/src/main.js';",
        "const later = await import('left-pad');",
        "import type { Thing } from 'typed-only';",
      ].join('\n'),
      'packages/lib/test/lib.test.ts': "import { expect } from 'vitest';\n",
      'packages/base/package.json': { ...base, dependencies: { '@x/lib': 'workspace:^' } },
      'packages/base/src/index.ts': 'export const g = 1;\n',
    });
    expect(dependencyProblems(root).sort()).toEqual(
      [
        'packages/lib/src/index.ts imports the app @x/app: a package must not depend on an app',
        'packages/lib/src/index.ts imports ../../../apps/app/src/main.js, outside packages/lib: import the package by its name (and declare it)',
        'packages/lib/src/index.ts imports left-pad, which packages/lib/package.json does not declare as a dependency or peer dependency',
        'packages/lib/src/index.ts imports typed-only, which packages/lib/package.json does not declare as a dependency or peer dependency',
        'packages/lib/test/lib.test.ts imports vitest, which packages/lib/package.json does not declare',
        'packages/lib/package.json declares the app @x/app',
        'packages/base/package.json depends on @x/lib, which nothing it ships imports',
      ].sort(),
    );
  });
});
