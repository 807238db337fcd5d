import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

describe('README', () => {
  it('the example runs as written against the built package: loss falls, blocks take turns', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const example = /```js\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(example).toBeDefined();
    const result = spawnSync(process.execPath, ['--input-type=module', '-e', example!], {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      encoding: 'utf8',
    });
    expect(result.status, result.stderr).toBe(0);
    const losses = [...result.stdout.matchAll(/step (\d+): loss ([\d.]+), block (\d)/g)];
    expect(losses.map(([, step, , block]) => [Number(step), Number(block)])).toEqual([
      [5, 1],
      [10, 0],
      [15, 1],
      [20, 0],
    ]);
    expect(Number(losses[3]![2])).toBeLessThan(Number(losses[0]![2]));
    expect(result.stdout).toMatch(/optimizer state held now: 0 bytes/);
  });
});
