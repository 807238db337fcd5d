import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseFlags, UsageError } from '@badam/core';
import { afterAll, describe, expect, it } from 'vitest';
import {
  FollowerCheckpointStore,
  launchRanks,
  type RunnerDialect,
  rankEnvironmentOf,
  resolveRunOptions,
  runnerFlags,
} from '../src/index.js';

const scratch = mkdtempSync(join(tmpdir(), 'badam-ranks-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe("torchrun's variables", () => {
  it('make a process a rank; a process started on its own is none', () => {
    expect(rankEnvironmentOf({})).toBeUndefined();
    expect(rankEnvironmentOf({ RANK: '1', WORLD_SIZE: '2', MASTER_PORT: '29501' })).toEqual({
      rank: 1,
      worldSize: 2,
      localRank: 1,
      masterAddr: '127.0.0.1',
      masterPort: 29501,
    });
    expect(
      rankEnvironmentOf({ RANK: '5', WORLD_SIZE: '8', LOCAL_RANK: '1', MASTER_ADDR: 'node0' })?.masterPort,
    ).toBe(29500);
    expect(() => rankEnvironmentOf({ RANK: '2', WORLD_SIZE: '2' })).toThrow(
      'RANK 2 is not below WORLD_SIZE 2: ranks are 0 to WORLD_SIZE - 1',
    );
    expect(() => rankEnvironmentOf({ RANK: '0' })).toThrow(/WORLD_SIZE is not set/);
    expect(() => rankEnvironmentOf({ RANK: 'one', WORLD_SIZE: '2' })).toThrow(
      'RANK must be a whole number >= 0, got "one"',
    );
  });

  it("--nproc_per_node shards on @badam/cuda's devices (cuda, cpu, auto), never on tfjs", () => {
    const dialect: RunnerDialect = { name: 'x', describeMethods: (m) => m.join(' or ') };
    const flags = runnerFlags();
    const resolve = (argv: string[]) =>
      resolveRunOptions(parseFlags(argv, flags), 'block', dialect, { outputDir: 'out' });
    expect(() => resolve(['--nproc_per_node', '2', '--backend', 'tfjs'])).toThrow(UsageError);
    expect(() => resolve(['--nproc_per_node', '2', '--backend', 'tfjs'])).toThrow(
      /--nproc_per_node 2 shards the model over processes on --backend cuda or cpu .* this run uses --backend tfjs/,
    );
    for (const backend of ['cuda', 'cpu', 'auto'])
      expect(resolve(['--nproc_per_node', '2', '--backend', backend])).toMatchObject({
        nprocPerNode: 2,
        ddpTimeout: 1800,
      });
    expect(resolve(['--nproc_per_node', '2', '--backend', 'cpu'])).toMatchObject({
      cudaDevice: 'cpu-engine',
    });
    expect(resolve(['--backend', 'tfjs', '--ddp_timeout', '30'])).toMatchObject({
      nprocPerNode: 1,
      ddpTimeout: 30,
    });
  });
});

describe('launchRanks', () => {
  const script = join(scratch, 'rank.mjs');
  writeFileSync(
    script,
    `import { writeFileSync } from 'node:fs';
const { RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT } = process.env;
const seen = { RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT, argv: process.argv.slice(2) };
writeFileSync(${JSON.stringify(scratch)} + '/rank-' + RANK + '.json', JSON.stringify(seen));
process.exit(RANK === process.env.FAIL_RANK ? 3 : 0);
`,
  );

  it("starts the ranks with torchrun's variables and the same arguments; a failed rank's code is the run's", async () => {
    const lines: string[] = [];
    const io = { log: (m: string) => lines.push(m), warn: (m: string) => lines.push(m) };
    const env = { ...process.env, NNODES: '2', NODE_RANK: '1', MASTER_PORT: '29777' };
    expect(
      await launchRanks({
        name: 'x',
        script,
        argv: ['--a', '1'],
        nprocPerNode: 2,
        timeoutSeconds: 5,
        env,
        io,
      }),
    ).toBe(0);
    expect(lines[0]).toBe('x: starting 2 ranks (4 in all, node 1 of 2), rendezvous at 127.0.0.1:29777');
    expect(JSON.parse(readFileSync(join(scratch, 'rank-3.json'), 'utf8'))).toEqual({
      RANK: '3',
      LOCAL_RANK: '1',
      WORLD_SIZE: '4',
      LOCAL_WORLD_SIZE: '2',
      MASTER_ADDR: '127.0.0.1',
      MASTER_PORT: '29777',
      argv: ['--a', '1'],
    });
    expect(
      await launchRanks({
        name: 'x',
        script,
        argv: [],
        nprocPerNode: 3,
        timeoutSeconds: 5,
        env: { ...process.env, FAIL_RANK: '1' },
        io,
      }),
    ).toBe(3);
    expect(lines).toContain('x: rank 1 exited with code 3; the other ranks stop');
    await expect(
      launchRanks({
        name: 'x',
        script,
        argv: [],
        nprocPerNode: 2,
        timeoutSeconds: 5,
        env: { NODE_RANK: '2' },
        io,
      }),
    ).rejects.toThrow('NODE_RANK must be in [0, NNODES = 1), got "2"');
  });
});

describe('FollowerCheckpointStore', () => {
  it('says where rank 0 writes and reads checkpoints from the reader, writing nothing', async () => {
    const read: Array<string | undefined> = [];
    const reader = {
      save: async () => {
        throw new Error('a follower must not write');
      },
      load: async (path?: string) => {
        read.push(path);
        return { path: path ?? 'latest' } as never;
      },
    };
    const store = new FollowerCheckpointStore('/out', reader);
    expect(await store.save(10)).toBe(join('/out', 'checkpoint-10'));
    await store.load('/out/checkpoint-10');
    expect(read).toEqual(['/out/checkpoint-10']);
  });
});
