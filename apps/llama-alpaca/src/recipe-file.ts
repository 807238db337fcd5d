import { readFile, stat } from 'node:fs/promises';
import { BadamOptionError, type FlagSpec, parseFlags, UsageError } from '@badam/core';
import { parseDocument } from 'yaml';

/** True for a command-line word that names a recipe file (`config.yaml`, `config.yml`, `config.json`). */
export function isRecipePath(word: string): boolean {
  return !word.startsWith('-') && /\.(ya?ml|json)$/i.test(word);
}

/**
 * A LLaMA-Factory recipe (the YAML, or JSON, file `llamafactory-cli train` takes: one key per flag) as
 * command-line words, `--key=value` each, to put before the command line's own flags so that those win.
 * Lists become comma-separated values (`dataset: [a, b]` is `--dataset=a,b`) and nulls are left out. Every
 * key is checked against `flags` here, so that a mistake names the file: `recipe.yaml: unknown flag ...`.
 *
 * @example
 * ```ts
 * const argv = [...(await recipeArgs('examples/llama3_badam_sft.yaml', TRAIN_FLAGS)), '--max_steps', '10'];
 * ```
 */
export async function recipeArgs(path: string, flags: Readonly<Record<string, FlagSpec>>): Promise<string[]> {
  let text: string;
  try {
    // A named pipe or a device would be read forever: only a regular file is opened.
    if (!(await stat(path)).isFile())
      throw new UsageError(`${path} is not a regular file: give a LLaMA-Factory YAML or JSON recipe`);
    text = await readFile(path, 'utf8');
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(
      `${path}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message}; give a LLaMA-Factory YAML or JSON recipe, or flags`,
    );
  }
  let recipe: unknown;
  try {
    recipe = /\.json$/i.test(path) ? JSON.parse(text.replace(/^\uFEFF/, '')) : parseRecipeYaml(text);
  } catch (error) {
    throw new UsageError(
      `${path} is not valid ${/\.json$/i.test(path) ? 'JSON' : 'YAML'}: ${(error as Error).message}`,
    );
  }
  if (typeof recipe !== 'object' || recipe === null || Array.isArray(recipe)) {
    throw new UsageError(`${path} must hold one mapping of flag names to values (key: value per line)`);
  }
  const args: string[] = [];
  for (const [key, value] of Object.entries(recipe)) {
    if (value === null || value === undefined) continue;
    const scalar = (v: unknown) => typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean';
    if (Array.isArray(value) && value.every(scalar)) args.push(`--${key}=${value.join(',')}`);
    else if (scalar(value)) args.push(`--${key}=${String(value)}`);
    else
      throw new UsageError(
        `${path}: ${key} is ${Array.isArray(value) ? 'a list of mappings' : 'a mapping'}; each key takes one value, as its flag --${key} does`,
      );
  }
  try {
    parseFlags(args, flags);
  } catch (error) {
    if (error instanceof UsageError || error instanceof BadamOptionError)
      throw new UsageError(`${path}: ${error.message}`);
    throw error;
  }
  return args;
}

/**
 * YAML as LLaMA-Factory's recipes are: plain values. A tag the YAML library cannot resolve
 * (`!!js/function`, `!!python/object`, `!custom`) is an error, not read as the text after it.
 */
function parseRecipeYaml(text: string): unknown {
  const document = parseDocument(text);
  const problem = [
    ...document.errors,
    ...document.warnings.filter((w) => w.code === 'TAG_RESOLVE_FAILED'),
  ][0];
  if (problem !== undefined) throw new Error(problem.message.split('\n')[0]);
  return document.toJS();
}
