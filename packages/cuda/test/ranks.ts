import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { collectivesStatus } from '../src/index.js';

/** What one rank process did. */
export interface RankResult {
  readonly rank: number;
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  /** Milliseconds from the start of all ranks to this one's exit. */
  readonly ms: number;
}

/** A TCP port free now on 127.0.0.1 (for MASTER_PORT). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/**
 * Runs `script` as `worldSize` rank processes (torchrun's variables set) and resolves when all have exited.
 * `onStart` gets each child as it starts (to kill one in a test).
 */
export async function runRanks(
  script: string,
  worldSize: number,
  env: NodeJS.ProcessEnv = {},
  onStart?: (rank: number, child: ReturnType<typeof spawn>) => void,
): Promise<RankResult[]> {
  const port = await freePort();
  const start = Date.now();
  return Promise.all(
    Array.from({ length: worldSize }, (_, rank) => {
      const child = spawn(process.execPath, [script], {
        env: {
          ...process.env,
          BADAM_THREADS: '1',
          ...env,
          RANK: String(rank),
          WORLD_SIZE: String(worldSize),
          MASTER_ADDR: '127.0.0.1',
          MASTER_PORT: String(port),
        },
      });
      onStart?.(rank, child);
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => {
        stdout += d;
      });
      child.stderr.on('data', (d) => {
        stderr += d;
      });
      return new Promise<RankResult>((resolve) =>
        child.on('exit', (code, signal) =>
          resolve({ rank, code, signal, stdout, stderr, ms: Date.now() - start }),
        ),
      );
    }),
  );
}

/**
 * Whether Gloo can be used here. CI installs it (`.ci/run` sets BADAM_REQUIRE_GLOO=1): there, its absence
 * fails the run instead of skipping the multi-process tests.
 */
export function glooAvailable(): boolean {
  const { gloo } = collectivesStatus();
  if (!gloo.available && process.env.BADAM_REQUIRE_GLOO === '1')
    throw new Error(`BADAM_REQUIRE_GLOO=1 but Gloo cannot be used: ${gloo.reason}`);
  return gloo.available;
}
