import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generatedInstructions, runCommand } from '../src/index.js';
import { writeTinyLlamaDir } from './fixtures/tiny-llama-dir.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'badam-llama-board-'));
  await writeTinyLlamaDir(join(dir, 'model'), 5);
  const records = generatedInstructions(16, 0, 1).train.map(({ instruction, input, output }) => ({
    instruction,
    input,
    output,
  }));
  await mkdir(join(dir, 'data'));
  await writeFile(join(dir, 'data', 'tasks.json'), JSON.stringify(records));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('--board', () => {
  it('serves badam-board beside the run, on loopback, showing the run live', async () => {
    const out = join(dir, 'run');
    const lines: string[] = [];
    const io = { log: (m: string) => lines.push(m), warn: (m: string) => lines.push(m), write: () => {} };
    const argv = [
      ...['--model_name_or_path', join(dir, 'model'), '--dataset', join(dir, 'data', 'tasks.json')],
      ...['--cutoff_len', '32', '--per_device_train_batch_size', '4', '--max_steps', '4'],
      ...['--logging_steps', '1', '--output_dir', out, '--board'],
    ];
    expect(await runCommand(argv, io), lines.join('\n')).toBe(0);
    const url = /badam-board: watch the run live at (http:\/\/127\.0\.0\.1:\d+\/)/.exec(
      lines.join('\n'),
    )?.[1];
    expect(url, lines.join('\n')).toBeDefined();
    const runs = (await (await fetch(`${url}api/runs`)).json()) as Array<{ dir: string }>;
    expect(runs.map((r) => r.dir)).toEqual([out]);
    const log = await (await fetch(`${url}runs/0/trainer_log.jsonl`)).text();
    expect(log.trim().split('\n')).toHaveLength(4);
  });
});
