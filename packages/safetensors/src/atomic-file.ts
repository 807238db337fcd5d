import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/**
 * A file that could not be written: the message names the file the caller asked for (not the temporary
 * file the bytes were going to), the reason in words and what to do; `code` keeps the system's error code
 * (`ENOSPC`, `EACCES`, ...) for callers that act on it.
 */
export class FileWriteError extends Error {
  override readonly name = 'FileWriteError';
  constructor(
    /** The file that was being written. */
    readonly path: string,
    /** The system's error code, e.g. `ENOSPC`; undefined when there was none. */
    readonly code: string | undefined,
    cause: unknown,
  ) {
    super(`cannot write ${path}: ${writeProblem(code, cause)}`, { cause });
  }
}

/** A write error's code in words, with the fix. */
function writeProblem(code: string | undefined, cause: unknown): string {
  switch (code) {
    case 'ENOSPC':
    case 'EDQUOT':
      return `the disk is full (${code}): free space on it, or write somewhere else`;
    case 'EACCES':
    case 'EPERM':
      return `permission denied (${code}): make the directory writable, or write somewhere else`;
    case 'EROFS':
      return 'the file system is read-only (EROFS): write somewhere else';
    case 'ENOTDIR':
    case 'EEXIST':
      return `a part of its path is a file, not a directory (${code})`;
    case 'EISDIR':
      return 'a directory is in its place (EISDIR): remove it, or write somewhere else';
    case 'ENOENT':
      return 'its directory was removed while it was being written (ENOENT)';
    case 'EIO':
      return 'the disk reported an input/output error (EIO): check the disk';
    default:
      return code ?? (cause as Error)?.message ?? String(cause);
  }
}

/**
 * Writes a file atomically: the chunks go to a temporary file next to `path`, which is flushed to disk and
 * then renamed over `path`. A crash or an interrupt leaves either the old file or the new one, never a
 * half-written one. Chunks are written one by one, so a multi-gigabyte file needs no buffer of its size.
 * A failure to write is a {@link FileWriteError} naming `path` (errors of producing the chunks pass as
 * they are); the temporary file is removed.
 */
export async function writeFileAtomic(
  path: string,
  chunks: Iterable<Uint8Array | string> | AsyncIterable<Uint8Array | string>,
): Promise<void> {
  const failed = (error: unknown) => new FileWriteError(path, (error as NodeJS.ErrnoException).code, error);
  try {
    await mkdir(dirname(path), { recursive: true });
  } catch (error) {
    throw failed(error);
  }
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(temp, 'w');
  } catch (error) {
    throw failed(error);
  }
  try {
    for await (const chunk of chunks) {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
      let written = 0;
      while (written < bytes.byteLength) {
        const { bytesWritten } = await handle
          .write(bytes, written, bytes.byteLength - written)
          .catch((error: unknown) => {
            throw failed(error);
          });
        written += bytesWritten;
      }
    }
    await handle.sync().catch((error: unknown) => {
      throw failed(error);
    });
    await handle.close().catch((error: unknown) => {
      throw failed(error);
    });
    await rename(temp, path).catch((error: unknown) => {
      throw failed(error);
    });
  } catch (error) {
    await handle.close().catch(() => {});
    await rm(temp, { force: true });
    throw error;
  }
}
