import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

describe('README', () => {
  it('the example runs as written against the built package', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const example = /```js\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(example).toBeDefined();
    const result = spawnSync(process.execPath, ['--input-type=module', '-e', example!], {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      encoding: 'utf8',
    });
    expect(result.status, result.stderr).toBe(0);
    const lines = result.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^prompt: "Below is an instruction that describes a task\./);
    expect(lines[0]).toMatch(/### Response:\\n"$/);
    // Only the answer is trained: the response, eos and the template's separator, as in LLaMA-Factory.
    expect(lines[1]).toMatch(/^trained tokens: "(cba|dab|Blue\.|5)<\/s>\\n\\n"$/);
    expect(lines.filter((l) => /^batch of [12], padded to \d+ tokens$/.test(l))).toHaveLength(2);
    for (const l of lines.filter((x) => x.startsWith('batch of')))
      expect(Number(/padded to (\d+)/.exec(l)![1]) % 8).toBe(0);
    expect(lines.at(-1)).toBe('1 held out');
  });
});
