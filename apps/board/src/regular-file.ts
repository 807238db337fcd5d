import { constants } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';

/** A file the board will not read: not a regular file (a named pipe, a device, a directory), or too large. */
export class UnreadableFileError extends Error {
  override readonly name = 'UnreadableFileError';
  constructor(
    message: string,
    /** ENOTREG for what is not a regular file, EFBIG for one over the limit. */
    readonly code: 'ENOTREG' | 'EFBIG',
  ) {
    super(message);
  }
}

/** An open regular file and its size and modification time when opened. */
export interface OpenedFile {
  readonly handle: FileHandle;
  readonly size: number;
  readonly mtimeMs: number;
}

/**
 * Opens `path` for reading only if it is a regular file. It is opened without blocking (a named pipe with
 * no writer would otherwise hang the open, and every later read on the thread pool), then checked on the
 * open descriptor, so a file swapped for a pipe between a check and the open is refused too. Rejects with
 * the file system's error (ENOENT, EACCES, ...) or an {@link UnreadableFileError} (ENOTREG).
 */
export async function openRegularFile(path: string): Promise<OpenedFile> {
  const handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const info = await handle.stat();
    if (!info.isFile()) {
      throw new UnreadableFileError(
        `${path} is not a regular file (a named pipe, device or directory)`,
        'ENOTREG',
      );
    }
    return { handle, size: info.size, mtimeMs: info.mtimeMs };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

/**
 * The whole of a small regular file (a results file, a comparison's table), refusing one over `maxBytes`
 * with an {@link UnreadableFileError} (EFBIG) instead of reading it into memory.
 */
export async function readSmallFile(path: string, maxBytes: number): Promise<Buffer> {
  const { handle, size } = await openRegularFile(path);
  try {
    if (size > maxBytes) {
      throw new UnreadableFileError(
        `${path} holds ${size} bytes, more than the ${maxBytes} the board reads whole`,
        'EFBIG',
      );
    }
    const buffer = Buffer.alloc(size);
    const { bytesRead } = await handle.read(buffer, 0, size, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}
