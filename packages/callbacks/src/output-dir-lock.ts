import { randomBytes } from 'node:crypto';
import { readFileSync, unlinkSync } from 'node:fs';
import { readdir, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { UsageError } from '@badam/core';

/**
 * A run's lock file in its output directory: `.badam-run-lock-<pid>-<id>`. Never earlier work, never
 * removed by `--overwrite_output_dir`; a dead holder's is removed by the next run.
 */
export const LOCK_FILE = /^\.badam-run-lock-(\d+)-[0-9a-f]{8}$/;

/** What a lock file records of the process holding it. */
export interface LockHolder {
  readonly pid: number;
  readonly hostname: string;
  /** The kernel's boot id (Linux): a lock from before a reboot is dead whatever its pid. */
  readonly bootId?: string;
  /** The process's start time in clock ticks since boot (Linux): tells a reused pid from the holder. */
  readonly startTicks?: string;
  /** The holder's command line. */
  readonly command: string;
  /** When it took the lock (ISO 8601). */
  readonly since: string;
}

/** This process's locks, by real directory path: one file each, however many runs of the process hold it. */
const held = new Map<string, { path: string; holds: number }>();
let exitHookInstalled = false;

/**
 * One run per output directory, across processes. The lock is a file the run creates in the directory
 * (exclusively, under a name of its own) recording its pid, host, boot id, process start time and command
 * line; after creating it the run lists the directory, and a lock file of another live process means the
 * directory is in use: the run removes its own and stops, naming the holder. Two runs that start at once
 * cannot both go on: whichever lists second sees the other's file (both may stop; neither is harmed).
 *
 * The lock dies with its process: it is removed when the process exits (Ctrl-C and errors included), and a
 * file left by a process killed outright (`kill -9`, a crash, a reboot) belongs to a dead holder, which the
 * next run recognises and removes: no such process, a process with another start time (the pid was reused),
 * or another boot id. Node has no `flock`, and a lock held through an open file descriptor would need a
 * native addon; this needs none, and works on any local file system. A lock taken on another host (a shared
 * network directory) cannot be checked: it counts as live, and the message says which file to remove.
 *
 * Within one process the lock is re-entrant: runs of the same process (a command that prepares its
 * directory, then trains into it) share it; {@link OutputDirLock.release} lets go of one hold.
 *
 * @example
 * ```ts
 * const lock = await OutputDirLock.acquire('output/run-1'); // throws, naming the holder, if in use
 * try { await train(); } finally { lock.release(); }
 * ```
 */
export class OutputDirLock {
  private released = false;
  private constructor(
    /** The directory, as its real path. */
    readonly directory: string,
    /** The lock file. */
    readonly path: string,
  ) {}

  /**
   * Takes the lock of `directory` (which must exist), or throws a `UsageError` naming the live holder:
   * pid, command line and since when. Lock files of dead holders are removed on the way.
   */
  static async acquire(directory: string): Promise<OutputDirLock> {
    const real = await realpath(directory);
    const mine = held.get(real);
    if (mine !== undefined) {
      mine.holds += 1;
      return new OutputDirLock(real, mine.path);
    }
    const path = join(real, `.badam-run-lock-${process.pid}-${randomBytes(4).toString('hex')}`);
    await writeFile(path, `${JSON.stringify(ownRecord())}\n`, { flag: 'wx' });
    held.set(real, { path, holds: 1 });
    installExitHook();
    const holder = await liveHolder(real, path);
    if (holder !== undefined) {
      held.delete(real);
      await rm(path, { force: true });
      throw new UsageError(inUseMessage(directory, holder));
    }
    return new OutputDirLock(real, path);
  }

  /** Lets go of this hold; the file goes with the process's last hold (or when the process exits). */
  release(): void {
    if (this.released) return;
    this.released = true;
    const entry = held.get(this.directory);
    if (entry === undefined || entry.path !== this.path) return;
    entry.holds -= 1;
    if (entry.holds > 0) return;
    held.delete(this.directory);
    removeQuietly(this.path);
  }
}

/**
 * Refuses, before any work, a directory another live process holds the lock of (a `UsageError` naming the
 * holder); removes lock files of dead holders. For a look before the directory is made or the lock taken.
 */
export async function checkOutputDirFree(directory: string): Promise<void> {
  const real = await realpath(directory).catch(() => undefined);
  if (real === undefined || held.has(real)) return;
  const holder = await liveHolder(real, undefined);
  if (holder !== undefined) throw new UsageError(inUseMessage(directory, holder));
}

/** Whether another live process holds `directory`'s lock (a default directory in use is not reused). */
export async function isOutputDirLocked(directory: string): Promise<boolean> {
  const real = await realpath(directory).catch(() => undefined);
  if (real === undefined || held.has(real)) return false;
  return (await liveHolder(real, undefined)) !== undefined;
}

function inUseMessage(directory: string, { holder, file }: { holder: LockHolder; file: string }): string {
  const where =
    holder.hostname === hostname()
      ? `process ${holder.pid}`
      : `process ${holder.pid} on host ${holder.hostname} (which cannot be checked from here; if it is gone, remove ${file})`;
  return `output directory ${directory} is in use by another run: ${where}, \`${holder.command}\`, since ${holder.since}. Wait for it to end or stop it, or choose another --output_dir`;
}

/** The first lock file in `directory` (other than `own`) whose holder lives; dead holders' files are removed. */
async function liveHolder(
  directory: string,
  own: string | undefined,
): Promise<{ holder: LockHolder; file: string } | undefined> {
  let entries: string[];
  try {
    entries = await readdir(directory);
  } catch {
    return undefined;
  }
  for (const entry of entries) {
    const match = LOCK_FILE.exec(entry);
    const file = join(directory, entry);
    if (match === null || file === own) continue;
    const holder = await readHolder(file, Number(match[1]));
    if (holder === undefined) continue; // released while we looked
    if (isAlive(holder)) return { holder, file };
    await rm(file, { force: true });
  }
  return undefined;
}

/** A lock file's record; one being written (or unreadable) stands for its pid alone. */
async function readHolder(file: string, pid: number): Promise<LockHolder | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return undefined;
  }
  try {
    const record = JSON.parse(text) as LockHolder;
    if (record.pid === pid && typeof record.hostname === 'string') return record;
  } catch {
    // being written: fall through
  }
  return { pid, hostname: hostname(), command: '(starting)', since: '(unknown)' };
}

/** True unless the holder is known to be gone: no such process, a reused pid, or a reboot since. */
function isAlive(holder: LockHolder): boolean {
  if (holder.hostname !== hostname()) return true;
  const boot = bootId();
  if (holder.bootId !== undefined && boot !== undefined && holder.bootId !== boot) return false;
  try {
    process.kill(holder.pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
  }
  const ticks = startTicks(holder.pid);
  return !(holder.startTicks !== undefined && ticks !== undefined && ticks !== holder.startTicks);
}

function ownRecord(): LockHolder {
  const boot = bootId();
  const ticks = startTicks(process.pid);
  return {
    pid: process.pid,
    hostname: hostname(),
    ...(boot !== undefined ? { bootId: boot } : {}),
    ...(ticks !== undefined ? { startTicks: ticks } : {}),
    command: process.argv.join(' '),
    since: new Date().toISOString(),
  };
}

function bootId(): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** Field 22 of `/proc/<pid>/stat` (after the command name, which may hold spaces and parentheses). */
function startTicks(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

/** The locks go with the process, whichever way it exits normally (a kill -9 leaves a dead holder's file). */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const { path } of held.values()) removeQuietly(path);
    held.clear();
  });
}
