import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

describe('README: Fine-tuning a Llama on the device', () => {
  it('the example runs as written, and the loss falls', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const section = readme.slice(readme.indexOf('## Fine-tuning a Llama on the device'));
    const example = /```js\n([\s\S]*?)```/.exec(section)?.[1];
    expect(example).toBeDefined();
    const result = spawnSync(process.execPath, ['--input-type=module', '-e', example!], {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      encoding: 'utf8',
    });
    expect(result.status, result.stderr).toBe(0);
    const losses = [...result.stdout.matchAll(/step \d+: loss ([\d.]+)/g)].map((m) => Number(m[1]));
    expect(losses).toHaveLength(3);
    expect(losses[2]!).toBeLessThan(losses[0]!);
    expect(result.stdout).toMatch(/eval: loss \S+, accuracy \d+\/18/);
  });
});
