import { UsageError } from '@badam/core';

/** This process's place in a multi-process run, from torchrun's environment variables. */
export interface RankEnvironment {
  /** RANK: this process, in [0, worldSize). */
  readonly rank: number;
  /** WORLD_SIZE: processes in the run, over every machine. */
  readonly worldSize: number;
  /** LOCAL_RANK: this process on its machine (the GPU it takes by default). */
  readonly localRank: number;
  /** MASTER_ADDR: where rank 0 hosts the rendezvous store. */
  readonly masterAddr: string;
  /** MASTER_PORT: the store's port. */
  readonly masterPort: number;
}

function integer(env: NodeJS.ProcessEnv, name: string, min: number, fallback?: number): number {
  const text = env[name];
  if (text === undefined || text === '') {
    if (fallback !== undefined) return fallback;
    throw new UsageError(
      `${name} is not set: a rank of a multi-process run needs RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT, as torchrun sets them`,
    );
  }
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < min)
    throw new UsageError(`${name} must be a whole number >= ${min}, got ${JSON.stringify(text)}`);
  return value;
}

/**
 * torchrun's variables when this process is a rank of a multi-process run (RANK is set), checked; undefined
 * for a process started on its own. MASTER_ADDR defaults to 127.0.0.1 and MASTER_PORT to 29500, as
 * torchrun's do; LOCAL_RANK to RANK (one machine).
 *
 * @example
 * ```ts
 * rankEnvironmentOf({ RANK: '1', WORLD_SIZE: '2', MASTER_PORT: '29501' });
 * // { rank: 1, worldSize: 2, localRank: 1, masterAddr: '127.0.0.1', masterPort: 29501 }
 * ```
 */
export function rankEnvironmentOf(env: NodeJS.ProcessEnv = process.env): RankEnvironment | undefined {
  if (env.RANK === undefined || env.RANK === '') return undefined;
  const worldSize = integer(env, 'WORLD_SIZE', 1);
  const rank = integer(env, 'RANK', 0);
  if (rank >= worldSize)
    throw new UsageError(`RANK ${rank} is not below WORLD_SIZE ${worldSize}: ranks are 0 to WORLD_SIZE - 1`);
  const masterPort = integer(env, 'MASTER_PORT', 1, 29500);
  if (masterPort > 65535)
    throw new UsageError(`MASTER_PORT must be a TCP port (at most 65535), got ${masterPort}`);
  return {
    rank,
    worldSize,
    localRank: integer(env, 'LOCAL_RANK', 0, rank),
    masterAddr: env.MASTER_ADDR || '127.0.0.1',
    masterPort,
  };
}
