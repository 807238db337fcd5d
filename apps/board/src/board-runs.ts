import { readdir, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';

/** The log file a run writes (LLaMA-Factory's name). */
export const TRAINER_LOG_FILE = 'trainer_log.jsonl';

/** The results files a run writes at the end (Hugging Face's names, and the embedded default's). */
export const RESULTS_FILES = [
  'all_results.json',
  'train_results.json',
  'eval_results.json',
  'embedded_results.json',
] as const;

/** One run the board shows: an output directory with (or about to get) a `trainer_log.jsonl`. */
export interface BoardRun {
  /** Index in the board's list: the run's id in URLs and events. */
  readonly id: number;
  /** A short name for legends: the directory's name, with its parent's when names repeat. */
  readonly name: string;
  /** The directory, absolute. */
  readonly dir: string;
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

async function hasLog(dir: string): Promise<boolean> {
  try {
    return (await stat(join(dir, TRAINER_LOG_FILE))).isFile();
  } catch {
    return false;
  }
}

/**
 * The runs under the directories given on the command line. A directory with a `trainer_log.jsonl` is a
 * run; one without is searched one level down (`badam-llama compare` writes one run per method there), and
 * if nothing is found there either it is still a run, whose log has not been written yet (the board was
 * started beside a run that is just beginning). A path that is not a directory is an error naming it.
 */
export async function findRuns(dirs: readonly string[]): Promise<BoardRun[]> {
  const found: string[] = [];
  for (const given of dirs) {
    const dir = resolve(given);
    if (!(await isDirectory(dir))) {
      throw new Error(
        `${given} is not a directory: pass the output_dir of a badam-llama or badam-roberta run`,
      );
    }
    if (await hasLog(dir)) {
      found.push(dir);
      continue;
    }
    const children: string[] = [];
    for (const entry of (await readdir(dir, { withFileTypes: true })).sort((a, b) =>
      a.name.localeCompare(b.name),
    )) {
      const child = join(dir, entry.name);
      if (entry.isDirectory() && (await hasLog(child))) children.push(child);
    }
    found.push(...(children.length > 0 ? children : [dir]));
  }
  const unique = [...new Set(found)];
  const names = unique.map((d) => basename(d));
  return unique.map((dir, id) => ({
    id,
    dir,
    name:
      names.filter((n) => n === names[id]).length > 1
        ? `${basename(resolve(dir, '..'))}/${names[id]}`
        : names[id]!,
  }));
}
