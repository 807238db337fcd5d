import { stat } from 'node:fs/promises';

/**
 * Why `path` cannot be read as a file, or undefined when it is a regular file. It is asked by `stat`
 * before anything opens the path: opening a named pipe blocks until a writer comes, and a device such as
 * `/dev/zero` never ends, so a run given one would hang (or fill memory) instead of saying what is wrong.
 * A symbolic link that loops is named as such, not as a file that does not exist.
 *
 * @example
 * ```ts
 * const problem = await regularFileProblem('model/config.json');
 * if (problem !== undefined) throw new Error(`model/config.json ${problem}`);
 * ```
 */
export async function regularFileProblem(path: string): Promise<string | undefined> {
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return 'does not exist';
    if (code === 'ELOOP') return 'is a symbolic link that loops (ELOOP): point it at a file';
    if (code === 'ENOTDIR') return 'does not exist (a part of its path is a file)';
    if (code === 'EACCES' || code === 'EPERM') return `cannot be read: permission denied (${code})`;
    return `cannot be read (${code ?? (error as Error).message})`;
  }
  if (info.isFile()) return undefined;
  if (info.isDirectory()) return 'is a directory, not a file';
  const kind = info.isFIFO()
    ? 'a named pipe'
    : info.isCharacterDevice() || info.isBlockDevice()
      ? 'a device'
      : info.isSocket()
        ? 'a socket'
        : 'not a regular file';
  return `is ${kind}, not a regular file: only files are read (a pipe or a device could be read forever)`;
}
