import { type ChildProcess, spawn } from 'node:child_process';
import { UsageError } from '@badam/core';

/** What {@link launchRanks} starts. */
export interface LaunchRanksOptions {
  /** The command's name, for messages (`badam-llama`). */
  readonly name: string;
  /** The program every rank runs (the runner's CLI script). */
  readonly script: string;
  /** Its arguments, the same for every rank. */
  readonly argv: readonly string[];
  /** Ranks to start on this machine (`--nproc_per_node`). */
  readonly nprocPerNode: number;
  /** `--ddp_timeout` in seconds: how long the ranks get to stop by themselves once one has failed. */
  readonly timeoutSeconds: number;
  /** The environment the ranks inherit (default `process.env`): NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT. */
  readonly env?: NodeJS.ProcessEnv;
  readonly io: { log(message: string): void; warn(message: string): void };
}

/**
 * torchrun's job on one machine: starts `nprocPerNode` ranks of `script`, each with RANK, LOCAL_RANK,
 * WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT set (several machines: NNODES and NODE_RANK in
 * the environment, the same MASTER_ADDR and MASTER_PORT on each), and waits. Ctrl-C in the terminal reaches
 * every rank (they finish the step together, save and stop); a SIGTERM to the launcher is passed on.
 * When a rank fails, the others stop by themselves (their collectives fail and name it); any still running
 * after `timeoutSeconds` (at most a minute) are terminated. Resolves to 0, or the first failed rank's exit
 * code (1 for a rank killed by a signal).
 */
export async function launchRanks(options: LaunchRanksOptions): Promise<number> {
  const env = options.env ?? process.env;
  const n = options.nprocPerNode;
  const nnodes = Number(env.NNODES ?? '1');
  const nodeRank = Number(env.NODE_RANK ?? '0');
  if (!Number.isSafeInteger(nnodes) || nnodes < 1)
    throw new UsageError(`NNODES must be a whole number >= 1, got ${JSON.stringify(env.NNODES)}`);
  if (!Number.isSafeInteger(nodeRank) || nodeRank < 0 || nodeRank >= nnodes)
    throw new UsageError(
      `NODE_RANK must be in [0, NNODES = ${nnodes}), got ${JSON.stringify(env.NODE_RANK)}`,
    );
  const worldSize = nnodes * n;
  const masterAddr = env.MASTER_ADDR || '127.0.0.1';
  const masterPort = env.MASTER_PORT || '29500';
  options.io.log(
    `${options.name}: starting ${n} ranks (${worldSize} in all${nnodes > 1 ? `, node ${nodeRank} of ${nnodes}` : ''}), rendezvous at ${masterAddr}:${masterPort}`,
  );
  const children: ChildProcess[] = [];
  let failure: { rank: number; code: number } | undefined;
  let stopTimer: NodeJS.Timeout | undefined;
  // Ctrl-C in a terminal reaches every process of the foreground group, the ranks included, once: the
  // launcher only waits for them to save and stop. A SIGTERM sent to the launcher is passed on.
  const onInt = () => {};
  const onTerm = () => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
  };
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  try {
    const exits = Array.from({ length: n }, (_, local) => {
      const rank = nodeRank * n + local;
      const child = spawn(process.execPath, [...process.execArgv, options.script, ...options.argv], {
        stdio: 'inherit',
        env: {
          ...env,
          RANK: String(rank),
          LOCAL_RANK: String(local),
          WORLD_SIZE: String(worldSize),
          LOCAL_WORLD_SIZE: String(n),
          MASTER_ADDR: masterAddr,
          MASTER_PORT: masterPort,
        },
      });
      children.push(child);
      return new Promise<void>((resolve) => {
        child.on('exit', (code, signal) => {
          if ((code ?? 1) !== 0 && failure === undefined) {
            failure = { rank, code: code ?? 1 };
            options.io.warn(
              `${options.name}: rank ${rank} ${signal ? `was killed by ${signal}` : `exited with code ${code}`}; the other ranks stop`,
            );
            // The others stop by themselves (their next collective fails); whoever is left is terminated.
            stopTimer = setTimeout(
              () => {
                for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
              },
              (Math.min(options.timeoutSeconds, 60) + 5) * 1000,
            );
          }
          resolve();
        });
        child.on('error', (error) => {
          failure ??= { rank, code: 1 };
          options.io.warn(`${options.name}: rank ${rank} could not start: ${error.message}`);
          resolve();
        });
      });
    });
    await Promise.all(exits);
  } finally {
    if (stopTimer) clearTimeout(stopTimer);
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
  }
  return failure?.code ?? 0;
}
