import type { Dirent } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { isInside } from './path-inside.js';
import { COMPARISON_FILES } from './served-files.js';

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
  /**
   * A short name for legends, by one rule for every run: the end of its path, as many directories as make
   * it unique among the board's runs (`block`, `block/seed-1`); a seed's directory always with its method's.
   */
  readonly name: string;
  /** The directory, absolute. */
  readonly dir: string;
  /** In a comparison (`<method>/seed-<n>`, `<method>/lr-<rate>-seed-<n>`): the method, with the rate if any. */
  readonly group?: string;
  /** In a comparison: the run's seed. */
  readonly seed?: number;
  /** In a comparison: the comparison's id. */
  readonly comparison?: number;
}

/** A comparison (`badam-llama compare`'s output directory): its table and loss plot, and its runs. */
export interface BoardComparison {
  readonly id: number;
  readonly name: string;
  /** The directory, absolute. */
  readonly dir: string;
}

/** How far {@link discoverRuns} looks below each directory it is given. */
export interface DiscoveryLimits {
  /** Directory levels below the given one. Default 8. */
  readonly maxDepth?: number;
  /** Directories read in all, per given directory. Default 5000. */
  readonly maxDirectories?: number;
}

/** What {@link discoverRuns} found: run directories and comparison directories, absolute, and what it skipped. */
export interface Discovered {
  readonly runs: string[];
  readonly comparisons: string[];
  readonly notes: string[];
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/** A directory the search does not enter: hidden ones (.git, .cache) and installed packages. */
const SKIPPED = (name: string) => name.startsWith('.') || name === 'node_modules';

/** `<method>/seed-<n>` or `<method>/lr-<rate>-seed-<n>`: a run of a seed comparison. */
export function comparisonCellOf(
  dir: string,
): { group: string; seed: number; comparisonDir: string } | undefined {
  const match = /^(?:lr-(.+)-)?seed-(\d+)$/.exec(basename(dir));
  if (match === null) return undefined;
  const method = basename(dirname(dir));
  return {
    group: match[1] !== undefined ? `${method} (lr ${match[1]})` : method,
    seed: Number(match[2]),
    comparisonDir: dirname(dirname(dir)),
  };
}

/**
 * The runs under the directories given on the command line, at any depth: every directory with a
 * `trainer_log.jsonl` (a regular file) is a run, and every directory with a comparison's table or results
 * (`compare_table.md`, `compare_results.json`), or holding `<method>/seed-<n>` runs, is a comparison. The
 * search is breadth first and bounded (`limits`), does not follow symbolic links to directories (no loops,
 * no escape from the directory given), and skips hidden directories and node_modules. A given directory in
 * which nothing is found is still a run, whose log has not been written yet (the board was started beside
 * a run that is just beginning). A path that is not a directory is an error naming it.
 */
export async function discoverRuns(
  dirs: readonly string[],
  limits: DiscoveryLimits = {},
): Promise<Discovered> {
  const maxDepth = limits.maxDepth ?? 8;
  const maxDirectories = limits.maxDirectories ?? 5000;
  const runs: string[] = [];
  const comparisons: string[] = [];
  const notes: string[] = [];
  for (const given of dirs) {
    const root = resolve(given);
    if (!(await isDirectory(root))) {
      throw new Error(
        `${given} is not a directory: pass the output_dir of a badam-llama or badam-roberta run`,
      );
    }
    const found: string[] = [];
    let queue: string[] = [root];
    let read = 0;
    for (let depth = 0; queue.length > 0; depth++) {
      if (depth > maxDepth) {
        notes.push(
          `searched ${maxDepth} levels below ${root} and stopped: name a directory nearer to the runs`,
        );
        break;
      }
      const stopping = read + queue.length > maxDirectories;
      if (stopping) {
        notes.push(
          `searched ${maxDirectories} directories under ${root} and stopped: name the run directories, or a directory nearer to them`,
        );
        queue = queue.slice(0, maxDirectories - read);
      }
      const next: string[] = [];
      for (const dir of queue) {
        read++;
        let entries: Dirent[];
        try {
          entries = await readdir(dir, { withFileTypes: true });
        } catch {
          continue; // unreadable: nothing to show from it
        }
        entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
        if (entries.some((e) => e.name === TRAINER_LOG_FILE && e.isFile())) found.push(dir);
        if (entries.some((e) => (COMPARISON_FILES as readonly string[]).includes(e.name) && e.isFile()))
          comparisons.push(dir);
        // Dirent.isDirectory() is false for a symbolic link: links are not followed.
        for (const e of entries) if (e.isDirectory() && !SKIPPED(e.name)) next.push(join(dir, e.name));
      }
      queue = stopping ? [] : next;
    }
    runs.push(...(found.length > 0 ? found : [root]));
    // A comparison still running has no table yet: its seed runs say where it is.
    for (const run of found) {
      const cell = comparisonCellOf(run);
      if (cell !== undefined && isInside(root, cell.comparisonDir)) comparisons.push(cell.comparisonDir);
    }
  }
  return { runs: [...new Set(runs)], comparisons: [...new Set(comparisons)].sort(), notes };
}

/**
 * Names for directories by one rule: the shortest ending of each path (whole directory names) that no
 * other path shares, and at least `<method>/seed-<n>` for a comparison's run.
 */
export function runNames(dirs: readonly string[]): string[] {
  const parts = dirs.map((d) =>
    resolve(d)
      .split(sep)
      .filter((p) => p !== ''),
  );
  const lengths = parts.map((p, i) => Math.min(p.length, comparisonCellOf(dirs[i]!) !== undefined ? 2 : 1));
  const name = (i: number) => parts[i]!.slice(parts[i]!.length - lengths[i]!).join('/') || '/';
  for (let changed = true; changed; ) {
    changed = false;
    const names = parts.map((_, i) => name(i));
    for (let i = 0; i < parts.length; i++) {
      if (names.some((n, j) => j !== i && n === names[i]) && lengths[i]! < parts[i]!.length) {
        lengths[i]!++;
        changed = true;
      }
    }
  }
  return parts.map((_, i) => name(i));
}

/**
 * The runs under `dirs` ({@link discoverRuns}), named ({@link runNames}) and, in a comparison, grouped
 * by method with their seeds.
 */
export async function findRuns(dirs: readonly string[], limits: DiscoveryLimits = {}): Promise<BoardRun[]> {
  const { runs, comparisons } = await discoverRuns(dirs, limits);
  return describeRuns(runs, comparisons);
}

/** Runs with their names, groups, seeds and comparison ids (positions in `comparisons`). */
export function describeRuns(dirs: readonly string[], comparisons: readonly string[]): BoardRun[] {
  const names = runNames(dirs);
  return dirs.map((dir, id) => {
    const cell = comparisonCellOf(dir);
    const comparison = cell === undefined ? -1 : comparisons.indexOf(cell.comparisonDir);
    return {
      id,
      dir,
      name: names[id]!,
      ...(cell !== undefined ? { group: cell.group, seed: cell.seed } : {}),
      ...(comparison >= 0 ? { comparison } : {}),
    };
  });
}
