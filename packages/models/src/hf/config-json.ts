import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BadamOptionError } from '@badam/core';

/** Reads and parses `<dir>/config.json`, naming the file in every error. */
export async function readConfigJson(directory: string): Promise<{ json: unknown; path: string }> {
  const path = join(directory, 'config.json');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new BadamOptionError(
      'model directory',
      directory,
      'a directory with config.json',
      `${path}: ${(error as NodeJS.ErrnoException).code}`,
    );
  }
  try {
    return { json: JSON.parse(text), path };
  } catch (error) {
    throw new BadamOptionError(path, 'invalid JSON', 'a valid config.json', (error as Error).message);
  }
}
