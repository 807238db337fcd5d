import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

describe('README', () => {
  it('the example runs as written against the built package', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const example = /```js\n([\s\S]*?)```/.exec(readme)?.[1];
    const result = spawnSync(process.execPath, ['--input-type=module', '-e', example!], {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      encoding: 'utf8',
    });
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/step 1: window 0/);
    expect(result.stdout).toMatch(/step 3: window 1/);
    expect(result.stdout).toMatch(/entries changed: 100/);
    // scatter: the windows are not the first entries in order
    expect(result.stdout).not.toMatch(/first indices 0,1,2,3/);
  });
});
