import { spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { LOCK_FILE, prepareOutputDir } from '../src/index.js';

const root = mkdtempSync(join(tmpdir(), 'badam-lock-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const locks = (dir: string) => readdirSync(dir).filter((e) => LOCK_FILE.test(e));

/** A process that prepared `dir` and holds it; resolves once it does. */
async function holder(dir: string) {
  const script = fileURLToPath(new URL('./fixtures/hold-output-dir.mjs', import.meta.url));
  const child = spawn(process.execPath, [script, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d) => String(d).includes('held') && resolve());
    child.on('exit', (code) => reject(new Error(`holder exited with ${code}: ${stderr}`)));
  });
  return child;
}

function startTicks(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!;
}

describe('one run per output directory', () => {
  it('a second run is refused naming the holder (pid, command, since when); a kill -9 frees the directory', async () => {
    const dir = join(root, 'busy');
    const child = await holder(dir);
    try {
      for (const options of [
        { overwrite: false, resuming: true },
        { overwrite: true, resuming: false },
      ]) {
        await expect(prepareOutputDir(dir, options)).rejects.toThrow(
          new RegExp(
            `^output directory ${dir} is in use by another run: process ${child.pid}, \`.*hold-output-dir\\.mjs ${dir}\`, since \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z\\. Wait for it to end or stop it, or choose another --output_dir$`,
          ),
        );
      }
    } finally {
      child.kill('SIGKILL');
      await new Promise((resolve) => child.on('exit', resolve));
    }
    expect(locks(dir)).toHaveLength(1); // what the killed run left
    const { lock } = await prepareOutputDir(dir, { overwrite: false, resuming: true });
    expect(locks(dir)).toEqual([lock.path.slice(dir.length + 1)]); // the dead holder's is gone
    lock.release();
    expect(locks(dir)).toEqual([]);
  });

  it("a lock whose pid now belongs to another process (pid reuse), or from before a reboot, is a dead holder's", async () => {
    const dir = join(root, 'stale');
    mkdirSync(dir);
    const live = process.ppid; // alive, but not the process that took these locks
    const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const record = (extra: object) =>
      JSON.stringify({
        pid: live,
        hostname: hostname(),
        command: 'node old-run',
        since: '2020-01-01T00:00:00Z',
        ...extra,
      });
    writeFileSync(join(dir, `.badam-run-lock-${live}-00000001`), record({ bootId, startTicks: '1' }));
    writeFileSync(
      join(dir, `.badam-run-lock-${live}-00000002`),
      record({ bootId: 'another-boot', startTicks: startTicks(live) }),
    );
    const { lock } = await prepareOutputDir(dir, { overwrite: false, resuming: false });
    expect(locks(dir)).toHaveLength(1);
    lock.release();
    // The same record with the holder's real start time is a live holder.
    writeFileSync(
      join(dir, `.badam-run-lock-${live}-00000003`),
      record({ bootId, startTicks: startTicks(live) }),
    );
    await expect(prepareOutputDir(dir, { overwrite: false, resuming: true })).rejects.toThrow(
      `is in use by another run: process ${live}, \`node old-run\`, since 2020-01-01T00:00:00Z`,
    );
    expect(existsSync(join(dir, `.badam-run-lock-${live}-00000003`))).toBe(true);
  });
});
