import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// The real command line, as a user runs it: `node apps/roberta-superglue/dist/src/cli.js ...`.
const CLI = fileURLToPath(new URL('../dist/src/cli.js', import.meta.url));

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'badam-roberta-lost-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function cli(args: readonly string[], cwd = dir): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  return new Promise((resolve) =>
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    }),
  );
}

describe('badam-roberta: nothing lost', () => {
  it("an empty --output_dir (--output_dir '', --output_dir=) is refused, the current directory untouched", async () => {
    const cwd = join(dir, 'cwd');
    await mkdir(cwd);
    await writeFile(join(cwd, 'model.safetensors'), 'another model');
    const runs = await Promise.all([
      cli(['--output_dir', '', '--overwrite_output_dir', '--max_steps', '2'], cwd),
      cli(['--output_dir=', '--overwrite_output_dir', '--max_steps', '2'], cwd),
    ]);
    for (const run of runs) {
      expect(run.code, run.stderr).toBe(2);
      expect(run.stderr).toContain('--output_dir is empty (an unset shell variable?)');
    }
    expect(await readdir(cwd)).toEqual(['model.safetensors']);
    expect(await readFile(join(cwd, 'model.safetensors'), 'utf8')).toBe('another model');
  });

  it('a checkpoint of another directory is refused into one holding an unrelated run, before any work', async () => {
    const other = join(dir, 'a', 'checkpoint-5');
    await mkdir(other, { recursive: true });
    const occupied = join(dir, 'b');
    await mkdir(join(occupied, 'checkpoint-9'), { recursive: true });
    await writeFile(join(occupied, 'model.safetensors'), 'another run');
    const run = await cli(['--output_dir', occupied, '--resume_from_checkpoint', other, '--max_steps', '2']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(
      `--resume_from_checkpoint ${other} continues a run of another directory, but output directory ${occupied} holds earlier work (1 checkpoint, model.safetensors)`,
    );
    expect((await readdir(occupied)).sort()).toEqual(['checkpoint-9', 'model.safetensors']);
  });
});
