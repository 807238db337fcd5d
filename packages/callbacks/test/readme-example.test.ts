import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

describe('README', () => {
  it('the example runs as written: progress lines, the files, a falling loss', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const example = /```js\n([\s\S]*?)```/.exec(readme)?.[1];
    const result = spawnSync(process.execPath, ['--input-type=module', '-e', example!], {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      encoding: 'utf8',
    });
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^step 20\/80 \(25%\)/m);
    expect(result.stdout).toMatch(/checkpoint-80 trainer_log.jsonl training_loss.png/);
    expect(Number(/train_loss (\d+\.\d+)/.exec(result.stdout)![1])).toBeLessThan(1);
  });
});
