import { readFile, stat } from 'node:fs/promises';
import { BadamOptionError } from '@badam/core';

/**
 * Reads a UTF-8 text file given as input (a dataset, dataset_info.json, a tokenizer file) strictly, with
 * the checks that keep a bad input from hanging, crashing or training on garbage, each an error naming
 * the file: it must be a regular file (asked by `stat` before opening: a named pipe would block until a
 * writer came, a device such as `/dev/zero` never ends); its bytes must be UTF-8 (a Latin-1 file is
 * refused with the line of its first bad byte instead of being trained on with U+FFFD in place of its
 * accents); a byte order mark at its start is dropped (it is not JSON, but editors write it). A file that
 * does not exist is `undefined` when `optional`.
 *
 * @param what How the error names the file's role, e.g. `'dataset file'`.
 */
export async function readTextFile(path: string, what: string): Promise<string>;
export async function readTextFile(
  path: string,
  what: string,
  options: { readonly optional: true },
): Promise<string | undefined>;
export async function readTextFile(
  path: string,
  what: string,
  options: { readonly optional?: boolean } = {},
): Promise<string | undefined> {
  const refuse = (problem: string) => new BadamOptionError(what, path, 'a readable UTF-8 text file', problem);
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && options.optional) return undefined;
    throw refuse(
      code === 'ENOENT'
        ? 'the file does not exist'
        : code === 'ELOOP'
          ? 'it is a symbolic link that loops (ELOOP): point it at a file'
          : (code ?? (error as Error).message),
    );
  }
  if (info.isDirectory()) throw refuse('it is a directory');
  if (!info.isFile())
    throw refuse(
      `it is ${info.isFIFO() ? 'a named pipe' : info.isCharacterDevice() || info.isBlockDevice() ? 'a device' : 'not a regular file'}, which could be read forever: give a file`,
    );
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (error) {
    throw refuse((error as NodeJS.ErrnoException).code ?? (error as Error).message);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    let at = firstInvalidUtf8(bytes);
    // The decoder trips on the byte after a broken sequence's lead byte: name the lead byte.
    for (let back = 1; back <= 3 && at - back >= 0; back++) {
      const byte = bytes[at - back]!;
      if (byte >= 0xc0) {
        at -= back;
        break;
      }
      if ((byte & 0xc0) !== 0x80) break;
    }
    const line = bytes.subarray(0, at).filter((b) => b === 0x0a).length + 1;
    throw refuse(
      `line ${line} has a byte that is not UTF-8 (0x${bytes[at]?.toString(16).padStart(2, '0')} at byte ${at}): convert the file to UTF-8, e.g. iconv -f latin1 -t utf-8`,
    );
  }
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/** The offset of the first byte that does not belong to a well-formed UTF-8 sequence. */
function firstInvalidUtf8(bytes: Uint8Array): number {
  // Bisect on prefixes: a prefix that decodes (or ends in an unfinished sequence) holds no bad byte.
  let good = 0;
  let bad = bytes.length;
  while (bad - good > 1) {
    const middle = (good + bad) >>> 1;
    try {
      new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(0, middle), { stream: true });
      good = middle;
    } catch {
      bad = middle;
    }
  }
  return good;
}
