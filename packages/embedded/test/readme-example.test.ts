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
    expect(result.stdout).toMatch(/^800 training and 80 held-out instructions, e\.g\. \{/);
    expect(result.stdout).toMatch(
      /a 4-layer Llama, its pretrained start in .*assets\/embedded-pretrained\n$/,
    );
  });
});
