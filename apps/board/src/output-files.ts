import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { readSmallFile } from './regular-file.js';
import { IMAGE_FILE } from './served-files.js';

/** An image in a run's or a comparison's directory, with its modification time (for the page's cache). */
export interface OutputImage {
  readonly name: string;
  readonly mtimeMs: number;
}

/** What {@link readOutputFiles} found: the parsed files by name, the images, and what could not be read. */
export interface OutputFiles {
  readonly files: Record<string, unknown>;
  readonly images: OutputImage[];
  readonly problems: string[];
}

/** The largest results or table file read whole. */
const MAX_FILE_BYTES = 4 * 2 ** 20;
/** The most files of each kind read from one directory. */
const MAX_FILES = 50;

/**
 * Reads the small outputs in `dir`: every regular file whose name `wanted` accepts (JSON parsed, Markdown as
 * text; at most 4 MiB each), and the names of its `*.png` images. A file that is absent, being written,
 * not a regular file or too large is left out (a problem names the last two); nothing throws.
 */
export async function readOutputFiles(dir: string, wanted: (name: string) => boolean): Promise<OutputFiles> {
  const files: Record<string, unknown> = {};
  const images: OutputImage[] = [];
  const problems: string[] = [];
  let names: string[];
  try {
    names = (await readdir(dir)).sort();
  } catch {
    return { files, images, problems };
  }
  for (const name of names.filter(wanted).slice(0, MAX_FILES)) {
    try {
      const text = (await readSmallFile(join(dir, name), MAX_FILE_BYTES)).toString('utf8');
      files[name] = name.endsWith('.json') ? JSON.parse(text) : text;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOTREG' || code === 'EFBIG' || code === 'EACCES')
        problems.push((error as Error).message);
      // else absent (deleted since the listing) or mid-write: the next change reads it again
    }
  }
  for (const name of names.filter((n) => IMAGE_FILE.test(n)).slice(0, MAX_FILES)) {
    try {
      const info = await stat(join(dir, name));
      if (info.isFile()) images.push({ name, mtimeMs: info.mtimeMs });
    } catch {
      // gone since the listing: not shown
    }
  }
  return { files, images, problems };
}
