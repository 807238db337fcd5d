import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

describe('README', () => {
  it('the example runs as written: BAdam teaches the model to count, and the checkpoint round-trips', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const example = /```js\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(example).toBeDefined();
    const result = spawnSync(process.execPath, ['--input-type=module', '-e', example!], {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      encoding: 'utf8',
    });
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toContain('22688 parameters, e.g. model.layers.0.self_attn.q_proj.weight');
    const losses = [...result.stdout.matchAll(/step \d+: loss ([\d.]+)/g)].map((m) => Number(m[1]));
    expect(losses).toHaveLength(3);
    expect(losses[2]!).toBeLessThan(0.5);
    expect(result.stdout).toContain('continues 1 2 3 with: 4 5 6 7');
    expect(result.stdout).toContain('reloaded: 22688 parameters');
  });
});
