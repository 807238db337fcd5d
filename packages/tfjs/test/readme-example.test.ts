import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/** The first ```js block after a README heading. */
function exampleUnder(heading: string): string {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const section = readme.slice(readme.indexOf(`\n${heading}\n`));
  const example = /```js\n([\s\S]*?)```/.exec(section)?.[1];
  expect(example, `a js example under ${heading}`).toBeDefined();
  return example!;
}

function run(example: string) {
  const result = spawnSync(process.execPath, ['--input-type=module', '-e', example], {
    cwd: fileURLToPath(new URL('..', import.meta.url)),
    encoding: 'utf8',
  });
  expect(result.status, result.stderr).toBe(0);
  return result.stdout;
}

describe('README', () => {
  it('the example runs as written against the built package: loss falls, blocks take turns', () => {
    const stdout = run(exampleUnder('## Example'));
    const losses = [...stdout.matchAll(/step (\d+): loss ([\d.]+), block (\d)/g)];
    expect(losses.map(([, step, , block]) => [Number(step), Number(block)])).toEqual([
      [5, 1],
      [10, 0],
      [15, 1],
      [20, 0],
    ]);
    expect(Number(losses[3]![2])).toBeLessThan(Number(losses[0]![2]));
    expect(stdout).toMatch(/optimizer state held now: 0 bytes/);
  });

  it('the LayersModel example trains a default-named Sequential layer by layer, saves and resumes it', () => {
    const stdout = run(exampleUnder('## LayersModel'));
    const [, first, last, steps] = /loss ([\d.]+) -> ([\d.]+) in (\d+) steps/.exec(stdout) ?? [];
    expect(Number(last)).toBeLessThan(Number(first) / 10);
    expect(Number(steps)).toBe(120); // 30 epochs of 4 batches
    expect(stdout).toMatch(/resumed at step 120, block 0/); // 12 blocks of 10 steps over 3 layers: the first layer is next
  });
});
