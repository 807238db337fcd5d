import { execFile, execFileSync, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../..', import.meta.url));
const platform = `${process.platform}-${process.arch}`;

interface Manifest {
  name: string;
  private?: boolean;
  license?: string;
  homepage?: string;
  keywords?: string[];
  repository?: { type: string; url: string; directory: string };
  exports?: Record<string, unknown>;
  bin?: Record<string, string>;
  [field: string]: unknown;
}

/** Every package a user can install: the workspace's packages/ and apps/ that are not private. */
const publishable = ['packages', 'apps'].flatMap((group) =>
  readdirSync(join(root, group))
    .map((name) => ({ dir: `${group}/${name}`, manifest: readJson(join(root, group, name, 'package.json')) }))
    .filter(({ manifest }) => manifest.private !== true),
);

function readJson(path: string): Manifest {
  return JSON.parse(readFileSync(path, 'utf8')) as Manifest;
}

/** The first ```js block after a heading of a Markdown file. */
function exampleUnder(markdownPath: string, heading: string): string {
  const text = `\n${readFileSync(markdownPath, 'utf8')}`;
  const at = text.indexOf(`\n${heading}\n`);
  expect(at, `${heading} in ${markdownPath}`).toBeGreaterThanOrEqual(0);
  const example = /```js\n([\s\S]*?)```/.exec(text.slice(at))?.[1];
  expect(example, `a js example under ${heading} in ${markdownPath}`).toBeDefined();
  return example!;
}

describe('the packages as npm users get them', () => {
  const work = mkdtempSync(join(tmpdir(), 'badam-packaging-'));
  const tarballs = join(work, 'tarballs');
  const unpacked = join(work, 'unpacked');
  const project = join(work, 'project');
  const installed = (name: string) => join(project, 'node_modules', name);

  /** Runs a script in the user's project and returns its stdout (it must exit 0). */
  function runInProject(file: string, source: string): string {
    writeFileSync(join(project, file), source);
    const result = spawnSync(process.execPath, [file], { cwd: project, encoding: 'utf8' });
    expect(result.status, `${file}: ${result.stderr}`).toBe(0);
    return result.stdout;
  }

  beforeAll(async () => {
    for (const dir of [tarballs, unpacked, project]) mkdirSync(dir);
    // pnpm pack rewrites workspace: ranges and runs prepack (the native addons' prebuilds).
    const exec = promisify(execFile);
    await Promise.all(
      publishable.map(({ dir }) =>
        exec('pnpm', ['pack', '--pack-destination', tarballs], { cwd: join(root, dir) }),
      ),
    );
    for (const file of readdirSync(tarballs)) {
      const into = join(unpacked, file.replace(/\.tgz$/, ''));
      mkdirSync(into);
      execFileSync('tar', ['-xzf', join(tarballs, file), '-C', into]);
    }
    writeFileSync(
      join(project, 'package.json'),
      JSON.stringify({ name: 'badam-user', private: true, type: 'module' }),
    );
    // --ignore-scripts: the prebuilt addons must load without any install script (pnpm and npm may skip them).
    execFileSync(
      'npm',
      [
        'install',
        '--no-audit',
        '--no-fund',
        '--ignore-scripts',
        '--loglevel=error',
        ...readdirSync(tarballs).map((file) => join(tarballs, file)),
        '@tensorflow/tfjs@4.22.0',
      ],
      { cwd: project, stdio: ['ignore', 'inherit', 'inherit'] },
    );
  });

  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('packs every publishable package with what a registry needs and no workspace ranges', () => {
    expect(readdirSync(tarballs)).toHaveLength(publishable.length);
    for (const { dir, manifest: source } of publishable) {
      const folder = join(unpacked, `${source.name.replace('@', '').replace('/', '-')}-${source.version}`);
      const packed = readJson(join(folder, 'package', 'package.json'));
      const files = readdirSync(join(folder, 'package'), { recursive: true }) as string[];
      expect(JSON.stringify(packed), `${packed.name}'s packed package.json`).not.toContain('workspace:');
      expect(readFileSync(join(folder, 'package', 'LICENSE'), 'utf8')).toMatch(
        /Apache License\s+Version 2\.0/,
      );
      expect(files).toContain('README.md');
      expect(
        files.filter((f) => f.endsWith('.map')),
        `${packed.name} ships no source maps`,
      ).toEqual([]);
      expect(packed).toMatchObject({
        license: 'Apache-2.0',
        repository: { type: 'git', directory: dir },
        homepage: expect.stringContaining(dir),
        keywords: expect.arrayContaining([expect.any(String)]),
        exports: {
          '.': { types: expect.any(String), import: expect.any(String), default: expect.any(String) },
        },
      });
      const entry = (packed.exports!['.'] as { default: string }).default;
      expect(files, `${packed.name}'s entry ${entry}`).toContain(entry.replace('./', ''));
    }
    for (const name of ['native', 'cuda']) {
      const prebuilds = join(unpacked, `badam-${name}-0.1.0`, 'package', 'prebuilds', platform);
      expect(readdirSync(prebuilds).filter((f) => f.endsWith('.node'))).toEqual([
        `badam_${name}.napi.glibc.node`,
      ]);
    }
  });

  it("runs @badam/tfjs's README examples and the root README's, as written", () => {
    const readme = join(installed('@badam/tfjs'), 'README.md');
    const example = runInProject('tfjs-example.mjs', exampleUnder(readme, '## Example'));
    expect([...example.matchAll(/step (\d+): loss [\d.]+, block (\d)/g)].map((m) => m[1])).toEqual([
      '5',
      '10',
      '15',
      '20',
    ]);
    const layers = runInProject('tfjs-layers.mjs', exampleUnder(readme, '## LayersModel'));
    expect(layers).toMatch(/resumed at step 120, block 0/);
    const own = runInProject(
      'own-code.mjs',
      exampleUnder(join(root, 'README.md'), '## Use it in your own code'),
    );
    expect(own).toMatch(/trained 160 steps; block 0 is active/);
  });

  it('@badam/native multiplies with its prebuilt addon, no install script and no compiler involved', () => {
    const out = runInProject(
      'native.mjs',
      `import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { gemmKernel, nativeAvailable, sgemm } from '@badam/native';
const require = createRequire(import.meta.url);
const dir = dirname(require.resolve('@badam/native/package.json'));
const addon = createRequire(require.resolve('@badam/native/package.json'))('node-gyp-build').path(dir);
const c = new Float32Array(4);
sgemm(Float32Array.of(1, 2, 3, 4), Float32Array.of(5, 6, 7, 8), c, { m: 2, n: 2, k: 2 });
console.log(JSON.stringify({ available: nativeAvailable(), kernel: gemmKernel(), c: [...c], addon }));
`,
    );
    const result = JSON.parse(out) as { available: boolean; kernel: string; c: number[]; addon: string };
    expect(result).toMatchObject({ available: true, c: [19, 22, 43, 50] });
    expect(result.addon).toContain(join('prebuilds', platform));
    expect(['avx512', 'avx2', 'scalar']).toContain(result.kernel);
    expect(existsSync(join(installed('@badam/native'), 'build'))).toBe(false);
  });

  it('@badam/cuda installs and runs its README example on the CPU device of the prebuilt addon, GPU or not', () => {
    const example = runInProject(
      'cuda-example.mjs',
      exampleUnder(join(installed('@badam/cuda'), 'README.md'), '# @badam/cuda'),
    );
    expect(example).toMatch(/step 6: trained 1 tensor/);
    const status = JSON.parse(
      runInProject(
        'cuda-status.mjs',
        `import { Device } from '@badam/cuda';
const cpu = Device.cpu();
const t = cpu.tensor(Float32Array.of(1.5, -2), [2], 'bfloat16', 'weights');
console.log(JSON.stringify({ status: Device.cudaStatus(), read: [...t.read()] }));
`,
      ),
    ) as { status: { compiled: boolean; devices: number; reason?: string }; read: number[] };
    expect(status.read).toEqual([1.5, -2]);
    // The prebuild is the nvcc build when the packing machine had CUDA; otherwise it says why not.
    const cpuOnly = existsSync(join(installed('@badam/cuda'), 'prebuilds', platform, 'cuda-unavailable.txt'));
    expect(status.status.compiled).toBe(!cpuOnly);
    if (status.status.devices === 0) expect(status.status.reason).toBeTruthy();
    // It loads without CUDA because it links no CUDA library: cudart is static, cuBLAS is dlopen'ed.
    const prebuild = join(installed('@badam/cuda'), 'prebuilds', platform, 'badam_cuda.napi.glibc.node');
    const needed = [
      ...execFileSync('readelf', ['-d', prebuild], { encoding: 'utf8' }).matchAll(/\(NEEDED\).*\[(.+)\]/g),
    ];
    expect(needed.map((m) => m[1])).toContain('libc.so.6');
    expect(needed.map((m) => m[1]).filter((lib) => /cu(da|blas)/.test(lib!))).toEqual([]);
  });

  it("the packages' command-line tools run from node_modules/.bin", () => {
    const bin = (name: string, args: string[]) =>
      spawnSync(join(project, 'node_modules', '.bin', name), args, { cwd: project, encoding: 'utf8' });
    const estimate = bin('badam-estimate', ['--model', 'llama3-8b']);
    expect(estimate.status, estimate.stderr).toBe(0);
    expect(estimate.stdout).toMatch(/BAdam/);
    for (const app of ['badam-llama', 'badam-roberta']) {
      const help = bin(app, ['--help']);
      expect(help.status, `${app}: ${help.stderr}`).toBe(0);
      expect(help.stdout).toContain(`Usage:\n  ${app}`);
    }
  });

  it("badam-llama's pretrained start ships in @badam/embedded and loads from node_modules", () => {
    const start = join(installed('@badam/embedded'), 'assets', 'embedded-pretrained');
    expect(readdirSync(start).sort()).toEqual(['config.json', 'model.safetensors', 'pretraining.json']);
    const loaded = JSON.parse(
      runInProject(
        'llama-start.mjs',
        `import { loadEmbeddedPretrained, PRETRAINED_STEPS } from '@badam/llama-alpaca';
const { model, record } = await loadEmbeddedPretrained();
console.log(JSON.stringify({ parameters: model.parameterCount, steps: record.settings.steps, expected: PRETRAINED_STEPS }));
model.dispose();
`,
      ),
    ) as { parameters: number; steps: number; expected: number };
    expect(loaded).toEqual({ parameters: 456_096, steps: loaded.expected, expected: loaded.expected });
  });

  it('without a matching prebuild, npm rebuild builds @badam/native from source; with neither, the error says what to do', () => {
    const pkg = installed('@badam/native');
    rmSync(join(pkg, 'prebuilds'), { recursive: true });
    const probe = `import { nativeAvailable, nativeUnavailableReason } from '@badam/native';
console.log(JSON.stringify({ available: nativeAvailable(), reason: nativeUnavailableReason() }));
`;
    const missing = JSON.parse(runInProject('native-missing.mjs', probe)) as {
      available: boolean;
      reason: string;
    };
    expect(missing.available).toBe(false);
    expect(missing.reason).toMatch(/no prebuilt addon for linux-x64/);
    expect(missing.reason).toMatch(/install a C\+\+ compiler \(g\+\+/);
    expect(missing.reason).toMatch(/npm rebuild @badam\/native/);
    expect(missing.reason).not.toMatch(/--filter/);

    execFileSync('npm', ['rebuild', '@badam/native', '--foreground-scripts'], {
      cwd: project,
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    expect(existsSync(join(pkg, 'build', 'Release', 'badam_native.node'))).toBe(true);
    const rebuilt = JSON.parse(runInProject('native-rebuilt.mjs', probe)) as { available: boolean };
    expect(rebuilt.available).toBe(true);
  });
});
