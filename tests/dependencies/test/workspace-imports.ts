import { readdirSync, readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve, sep } from 'node:path';

/** A workspace package as its package.json declares it. */
export interface WorkspacePackage {
  /** Folder relative to the workspace root, e.g. `packages/runner`. */
  readonly dir: string;
  readonly name: string;
  /** `apps/...`: an application, which no package may import. */
  readonly isApp: boolean;
  readonly dependencies: ReadonlySet<string>;
  readonly devDependencies: ReadonlySet<string>;
  readonly peerDependencies: ReadonlySet<string>;
  /** The package's `files`: what it ships. */
  readonly files: readonly string[];
}

/** One import in a source file: what it names and whether it ships (src, scripts) or is the package's own (tests). */
export interface SourceImport {
  readonly file: string;
  readonly specifier: string;
  readonly shipped: boolean;
}

/**
 * Folders whose files ship and run for users (`src`, and `scripts` when the package ships it: an install
 * script): their imports must be dependencies or peers. The rest a package uses itself (tests, benchmarks,
 * build scripts, a bundled web page): devDependencies count too.
 */
const CODE_DIRS = ['src', 'scripts', 'test', 'bench', 'web'];
const SOURCE_FILE = /\.(?:ts|mts|cts|js|mjs|cjs)$/;
const NODE_BUILTINS = new Set(builtinModules);

/**
 * `import ... from 'x'` and `export ... from 'x'` (statements start a line: an import in a message string is
 * not one), `import 'x'`, `import('x')`, `require('x')` and `require.resolve('x')` (also of a `createRequire`).
 */
const IMPORT_PATTERNS = [
  /^\s*(?:import|export)\b[^'";]*?\bfrom\s*['"]([^'"]+)['"]/gm,
  /^\s*import\s*['"]([^'"]+)['"]/gm,
  /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
  /\brequire\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
  /(?:\brequire|\))\.resolve\s*\(\s*['"]([^'"]+)['"]/g,
];

function readJson(path: string): Record<string, unknown> {
  return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
}

function keys(value: unknown): Set<string> {
  return new Set(Object.keys((value ?? {}) as object));
}

/** The packages under `packages/` and `apps/` of a workspace root. */
export function workspacePackages(root: string): WorkspacePackage[] {
  return ['packages', 'apps'].flatMap((group) => {
    let names: string[];
    try {
      names = readdirSync(join(root, group));
    } catch {
      return [];
    }
    return names
      .filter((name) => {
        try {
          return statSync(join(root, group, name, 'package.json')).isFile();
        } catch {
          return false;
        }
      })
      .map((name) => {
        const manifest = readJson(join(root, group, name, 'package.json'));
        return {
          dir: `${group}/${name}`,
          name: manifest.name as string,
          isApp: group === 'apps',
          dependencies: keys(manifest.dependencies),
          devDependencies: keys(manifest.devDependencies),
          peerDependencies: keys(manifest.peerDependencies),
          files: (manifest.files as string[] | undefined) ?? [],
        };
      });
  });
}

function sourceFiles(dir: string): string[] {
  let entries: string[];
  try {
    entries = readdirSync(dir, { recursive: true }) as string[];
  } catch {
    return [];
  }
  return entries
    .filter((entry) => !entry.split(sep).some((part) => part === 'node_modules' || part === 'dist'))
    .filter((entry) => SOURCE_FILE.test(entry) && !entry.endsWith('.d.ts'))
    .map((entry) => join(dir, entry));
}

/** Every import of a package's source files, comments left out. */
export function importsOf(root: string, pkg: WorkspacePackage): SourceImport[] {
  const out: SourceImport[] = [];
  for (const dir of CODE_DIRS) {
    const shipped = dir === 'src' || (dir === 'scripts' && pkg.files.includes('scripts'));
    for (const file of sourceFiles(join(root, pkg.dir, dir))) {
      const text = readFileSync(file, 'utf8')
        .replace(/\/\*[\s\S]*?\*\//g, '')
        .replace(/^\s*\/\/.*$/gm, '');
      for (const pattern of IMPORT_PATTERNS) {
        for (const match of text.matchAll(pattern)) {
          out.push({ file: relative(root, file), specifier: match[1]!, shipped });
        }
      }
    }
  }
  return out;
}

/** `@scope/name/sub` -> `@scope/name`, `name/sub` -> `name`. */
export function packageNameOf(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}

function isBuiltin(specifier: string): boolean {
  return specifier.startsWith('node:') || NODE_BUILTINS.has(packageNameOf(specifier));
}

/**
 * Every broken rule of the workspace at `root`, one line each (empty when the arrows are right):
 * - a package (under `packages/`) imports an app by name;
 * - any package reaches into another folder of the workspace by a relative path (`../../llama-alpaca/src`);
 * - a shipped file (src, scripts) imports a package that is neither a dependency nor a peer dependency;
 * - a test, benchmark or bundled page imports a package its package.json does not declare at all;
 * - a workspace package is declared as a dependency but no shipped file imports it (unless it provides a
 *   peer dependency of another dependency, as an app provides @badam/tfjs's optional @badam/native).
 */
export function dependencyProblems(root: string): string[] {
  const packages = workspacePackages(root);
  const apps = new Set(packages.filter((p) => p.isApp).map((p) => p.name));
  const workspace = new Set(packages.map((p) => p.name));
  const byName = new Map(packages.map((p) => [p.name, p]));
  const problems: string[] = [];
  for (const pkg of packages) {
    const imports = importsOf(root, pkg);
    const usedByShipped = new Set<string>();
    for (const { file, specifier, shipped } of imports) {
      if (specifier.startsWith('.')) {
        const target = resolve(root, dirname(file), specifier);
        const inside = relative(join(root, pkg.dir), target);
        if (inside.startsWith('..')) {
          problems.push(
            `${file} imports ${specifier}, outside ${pkg.dir}: import the package by its name (and declare it)`,
          );
        }
        continue;
      }
      if (isBuiltin(specifier)) continue;
      const name = packageNameOf(specifier);
      if (name === pkg.name) continue;
      if (shipped) usedByShipped.add(name);
      if (!pkg.isApp && apps.has(name)) {
        problems.push(`${file} imports the app ${name}: a package must not depend on an app`);
        continue;
      }
      const declared = shipped
        ? pkg.dependencies.has(name) || pkg.peerDependencies.has(name)
        : pkg.dependencies.has(name) || pkg.peerDependencies.has(name) || pkg.devDependencies.has(name);
      if (!declared) {
        problems.push(
          `${file} imports ${name}, which ${pkg.dir}/package.json does not declare${shipped ? ' as a dependency or peer dependency' : ''}`,
        );
      }
    }
    const providedPeers = new Set(
      [...pkg.dependencies].flatMap((dep) => [...(byName.get(dep)?.peerDependencies ?? [])]),
    );
    for (const name of pkg.dependencies) {
      if (workspace.has(name) && !usedByShipped.has(name) && !providedPeers.has(name)) {
        problems.push(`${pkg.dir}/package.json depends on ${name}, which nothing it ships imports`);
      }
    }
    if (!pkg.isApp) {
      for (const name of [...pkg.dependencies, ...pkg.devDependencies, ...pkg.peerDependencies]) {
        if (apps.has(name)) problems.push(`${pkg.dir}/package.json declares the app ${name}`);
      }
    }
  }
  return problems;
}
