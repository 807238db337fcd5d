import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

describe('README', () => {
  it('the example runs as written against the built package and does what the text says', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const example = /```js\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(example).toBeDefined();
    const result = spawnSync(process.execPath, ['--input-type=module', '-e', example!], {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      encoding: 'utf8',
    });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/BAdam: 2 blocks, switch every 2 steps, mode random/);
    expect(result.stdout).toMatch(
      /frozen parameter\(s\) in no block: model.embed_tokens.weight, lm_head.weight/,
    );
    const steps = [...result.stdout.matchAll(/updated block (\d), optimizer state (\d+) bytes/g)];
    expect(steps).toHaveLength(6);
    // One layer block is 16 + 4 elements: Adam's m and v in fp32.
    for (const [, , bytes] of steps) expect(Number(bytes)).toBe(8 * 20);
    const blocks = steps.map(([, b]) => b);
    expect(blocks[0]).toBe(blocks[1]);
    expect(blocks[2]).toBe(blocks[3]);
  });

  it('planning a run: the example prints the suggested K and the partition the plan produces', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const example = /## Planning a run\n\n```js\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(example).toBeDefined();
    const result = spawnSync(process.execPath, ['--input-type=module', '-e', example!], {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      encoding: 'utf8',
    });
    expect(result.status, result.stderr).toBe(0);
    // The comments in the example are what it prints, line by line.
    const comments = [...example!.matchAll(/^\/\/ (.+)$/gm)].map((m) => m[1]);
    expect(result.stdout.trim().split('\n')).toEqual(comments);
  });
});
