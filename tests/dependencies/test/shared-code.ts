import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { workspacePackages } from './workspace-imports.js';

/** A line of code as the comparison sees it, and where it stands. */
export interface ComparableLine {
  /** 1-based line in its file. */
  readonly line: number;
  /** The line with its white space folded. */
  readonly text: string;
}

/** A run of lines two files share. */
export interface SharedRun {
  readonly first: { readonly file: string; readonly line: number };
  readonly second: { readonly file: string; readonly line: number };
  /** Comparable lines in the run. */
  readonly lines: number;
}

/** A line of nothing but brackets and separators (`}`, `});`, `],`): shared by any two files. */
const PUNCTUATION_ONLY = /^[\s{}()[\];,]*$/;

/** The start of an import or re-export statement, which may run over several lines. */
const IMPORT_START = /^(?:import\b|export\s*(?:type\s*)?(?:\{|\*))/;

/**
 * The lines of a TypeScript or JavaScript file that are code worth comparing: comments, import and
 * re-export statements (a file's list of what it uses), blank lines and lone punctuation are left out, and
 * white space is folded.
 */
export function comparableLines(text: string): ComparableLine[] {
  const out: ComparableLine[] = [];
  let inComment = false;
  let inImport = false;
  text.split('\n').forEach((raw, i) => {
    let line = raw.trim();
    if (inComment) {
      const end = line.indexOf('*/');
      if (end < 0) return;
      inComment = false;
      line = line.slice(end + 2).trim();
    }
    const open = line.indexOf('/*');
    if (open === 0) {
      const end = line.indexOf('*/', 2);
      if (end < 0) {
        inComment = true;
        return;
      }
      line = line.slice(end + 2).trim();
    }
    if (line.startsWith('//')) return;
    if (inImport || IMPORT_START.test(line)) {
      // An import ends at its `from '...'` (or at `import '...'`, or a `;`).
      inImport = !/\bfrom\s*['"][^'"]+['"]|^import\s*['"]|;\s*$/.test(line);
      return;
    }
    if (PUNCTUATION_ONLY.test(line)) return;
    out.push({ line: i + 1, text: line.replace(/\s+/g, ' ') });
  });
  return out;
}

/**
 * The runs of at least `minLines` consecutive comparable lines (see {@link comparableLines}) that a file of
 * `first` and a file of `second` both hold, word for word. Files are given by path and text.
 */
export function sharedRuns(
  first: ReadonlyMap<string, string>,
  second: ReadonlyMap<string, string>,
  minLines = 6,
): SharedRun[] {
  const key = (lines: readonly ComparableLine[], at: number) =>
    lines
      .slice(at, at + minLines)
      .map((l) => l.text)
      .join('\n');
  const index = new Map<string, { file: string; line: number }>();
  for (const [file, text] of second) {
    const lines = comparableLines(text);
    for (let at = 0; at + minLines <= lines.length; at++) {
      const k = key(lines, at);
      if (!index.has(k)) index.set(k, { file, line: lines[at]!.line });
    }
  }
  const runs: SharedRun[] = [];
  for (const [file, text] of first) {
    const lines = comparableLines(text);
    for (let at = 0; at + minLines <= lines.length; ) {
      const found = index.get(key(lines, at));
      if (found === undefined) {
        at++;
        continue;
      }
      // One run per place: the windows that follow it overlap the same shared lines.
      let length = minLines;
      while (at + length < lines.length && index.has(key(lines, at + length - minLines + 1))) length++;
      runs.push({ first: { file, line: lines[at]!.line }, second: found, lines: length });
      at += length;
    }
  }
  return runs;
}

/** Every TypeScript and JavaScript file under `dir`, by path relative to `root`, with its text. */
function sourcesUnder(root: string, dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (path: string) => {
    for (const name of readdirSync(path)) {
      const full = join(path, name);
      if (statSync(full).isDirectory()) walk(full);
      else if (/\.(?:ts|mts|cts|js|mjs|cjs)$/.test(name) && !name.endsWith('.d.ts'))
        out.set(relative(root, full), readFileSync(full, 'utf8'));
    }
  };
  walk(join(root, dir));
  return out;
}

/**
 * Code the runners (the apps built on `@badam/runner`) share beyond their import lists: what one writes
 * again of the other belongs in the runner kit or another package. One line per shared run, naming both
 * places.
 */
export function runnerSharedCode(root: string, minLines = 6): string[] {
  const runners = workspacePackages(root).filter((p) => p.isApp && p.dependencies.has('@badam/runner'));
  const sources = runners.map((p) => sourcesUnder(root, join(p.dir, 'src')));
  const problems: string[] = [];
  for (let i = 0; i < runners.length; i++) {
    for (let j = i + 1; j < runners.length; j++) {
      for (const run of sharedRuns(sources[i]!, sources[j]!, minLines)) {
        problems.push(
          `${run.first.file}:${run.first.line} and ${run.second.file}:${run.second.line} share ${run.lines} lines of code: move them into @badam/runner (or the package they belong to)`,
        );
      }
    }
  }
  return problems;
}

/** The source files a reader opens (TypeScript, JavaScript, C, C++, CUDA), not what a build or install made. */
const SOURCE_FILE = /\.(?:ts|tsx|mts|cts|js|mjs|cjs|c|cc|cpp|h|hpp|cu|cuh)$/;
const NOT_SOURCE_DIRS = new Set(['node_modules', 'dist', 'build', 'prebuilds', '.turbo', 'api', 'assets']);

/**
 * Source files over `maxLines` lines anywhere in the workspace's packages, apps and tests (their tests and
 * native code included): one line per file, with its length.
 */
export function oversizedSources(root: string, maxLines = 800): string[] {
  const problems: string[] = [];
  const walk = (path: string) => {
    for (const name of readdirSync(path)) {
      const full = join(path, name);
      if (statSync(full).isDirectory()) {
        if (!NOT_SOURCE_DIRS.has(name) && !name.startsWith('.')) walk(full);
      } else if (SOURCE_FILE.test(name) && !name.endsWith('.d.ts')) {
        const text = readFileSync(full, 'utf8');
        const lines = text.split('\n').length - (text.endsWith('\n') ? 1 : 0);
        if (lines > maxLines)
          problems.push(
            `${relative(root, full)} has ${lines} lines, over ${maxLines}: split it where a reader would`,
          );
      }
    }
  };
  for (const group of ['packages', 'apps', 'tests']) {
    try {
      walk(join(root, group));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
  return problems;
}
