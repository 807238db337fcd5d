import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { BadamOptionError } from '@badam/core';
import { regularFileProblem } from '@badam/safetensors';

/** Reads and parses `<dir>/config.json`, naming the file in every error. */
export async function readConfigJson(directory: string): Promise<{ json: unknown; path: string }> {
  const path = join(directory, 'config.json');
  const problem = await regularFileProblem(path);
  if (problem !== undefined && problem !== 'does not exist')
    throw new BadamOptionError(
      'model directory',
      directory,
      'a directory with config.json',
      `${path} ${problem}`,
    );
  let text: string;
  try {
    text = (await readFile(path, 'utf8')).replace(/^\uFEFF/, ''); // a byte order mark is not JSON, but harmless
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const directoryExists = await stat(directory).then(
      (s) => s.isDirectory(),
      () => false,
    );
    throw new BadamOptionError(
      'model directory',
      directory,
      'a directory with config.json',
      !directoryExists
        ? `${directory} does not exist or is not a directory`
        : code === 'ENOENT'
          ? `${path} does not exist: is this a Hugging Face model folder?`
          : `${path}: ${code}`,
    );
  }
  try {
    return { json: JSON.parse(text), path };
  } catch (error) {
    throw new BadamOptionError(path, 'invalid JSON', 'a valid config.json', (error as Error).message);
  }
}
