import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

describe('README', () => {
  it('the example runs as written: a falling loss, an exact resume, and --backend cuda refused with 2', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const example = /```js\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(example).toBeDefined();
    const result = spawnSync(process.execPath, ['--input-type=module', '-e', example!], {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      encoding: 'utf8',
    });
    expect(result.status, result.stderr).toBe(0);
    const runs = [
      ...result.stdout.matchAll(
        /^40 steps on tfjs cpu, loss (\S+) -> (\S+), Adam state for 16 of 32 weights$/gm,
      ),
    ];
    expect(runs).toHaveLength(2);
    const [first, last] = [Number(runs[0]![1]), Number(runs[0]![2])];
    expect(last).toBeLessThan(first / 3);
    expect(runs[1]![2]).toBe(runs[0]![2]); // the resumed run ends where the straight one did
    expect(result.stdout).toMatch(/^training 40 steps \(from step 20\)$/m);
    expect(result.stdout).toMatch(/^exit code 2$/m);
    expect(result.stderr).toContain('tiny: error: --backend cuda is not available yet for two-layer model');
  });
});
