/**
 * @badam/native — native CPU kernels for BAdam on Node: a blocked single-precision matrix multiply with
 * AVX-512 / AVX2 micro-kernels chosen at run time and a small thread pool, built with g++ by the package's
 * build script (nothing is downloaded). `@badam/tfjs` uses it to replace tfjs's matrix-multiply kernel.
 *
 * @packageDocumentation
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

interface Addon {
  gemm(
    a: Float32Array,
    b: Float32Array,
    c: Float32Array,
    m: number,
    n: number,
    k: number,
    transA: boolean,
    transB: boolean,
    batch: number,
    strideA: number,
    strideB: number,
    reference: boolean,
  ): void;
  kernelName(): string;
  threads(set?: number): number;
}

/** The package's folder: the nearest one above this module with a package.json (src/ in tests, dist/src/ when built). */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

const require = createRequire(import.meta.url);
/** node-gyp-build's resolver: build/Release/ (built from source here), then prebuilds/<platform>-<arch>/. */
const nodeGypBuild = require('node-gyp-build') as { path(dir: string): string };

/** What to do when no addon loads: the tools a build from source needs and the command that runs it. */
const BUILD_FROM_SOURCE =
  'to build it from source for this machine, install a C++ compiler (g++; Debian/Ubuntu: apt-get install g++), ' +
  'let the package run its install script (npm: `npm install-scripts approve @badam/native` where npm asks; ' +
  "pnpm: `allowBuilds: { '@badam/native': true }` in pnpm-workspace.yaml) and run `npm rebuild @badam/native` " +
  '(pnpm: `pnpm rebuild @badam/native`)';

function load(): { addon: Addon | undefined; error: string | undefined } {
  const root = packageRoot();
  let path: string;
  try {
    path = nodeGypBuild.path(root);
  } catch {
    const note = join(root, 'build', 'Release', 'unavailable.txt');
    const why = existsSync(note)
      ? `the build from source failed: ${readFileSync(note, 'utf8').trim()}`
      : 'it was not built from source';
    return {
      addon: undefined,
      error: `@badam/native has no prebuilt addon for ${process.platform}-${process.arch} and ${why}; ${BUILD_FROM_SOURCE}`,
    };
  }
  try {
    return { addon: require(path) as Addon, error: undefined };
  } catch (error) {
    return {
      addon: undefined,
      error: `@badam/native could not load ${path} (${(error as Error).message.split('\n')[0]}); ${BUILD_FROM_SOURCE}`,
    };
  }
}

const loaded = load();

/** Whether the native kernels are built and loadable here. */
export function nativeAvailable(): boolean {
  return loaded.addon !== undefined;
}

/** Why the native kernels are not available (undefined when they are). */
export function nativeUnavailableReason(): string | undefined {
  return loaded.error;
}

function addon(): Addon {
  if (loaded.addon === undefined) throw new Error(loaded.error);
  return loaded.addon;
}

/** Shapes of a (batched) matrix product: C[batch, m, n] = op(A)[m, k] op(B)[k, n]. */
export interface GemmShape {
  m: number;
  n: number;
  k: number;
  /** op(A) = A^T: A is stored [k, m]. */
  transA?: boolean;
  /** op(B) = B^T: B is stored [n, k]. */
  transB?: boolean;
  /** Number of products. Default 1. */
  batch?: number;
  /** Elements between consecutive A matrices; 0 reuses one A for every product. Default m * k. */
  strideA?: number;
  /** Elements between consecutive B matrices; 0 reuses one B. Default k * n. */
  strideB?: number;
}

/**
 * A GEMM argument out of range. The message names the argument, what is allowed and the value, as
 * @badam/core's option errors do; the package carries its own class rather than depend on core for one.
 */
export class NativeOptionError extends Error {
  override readonly name = 'NativeOptionError';

  constructor(
    readonly option: string,
    readonly value: unknown,
    readonly expected: string,
  ) {
    super(
      `${option} must be ${expected}, got ${typeof value === 'string' ? JSON.stringify(value) : String(value)}`,
    );
  }
}

function check(shape: GemmShape) {
  const { m, n, k, batch = 1 } = shape;
  for (const [name, v] of Object.entries({ m, n, k, batch })) {
    if (!Number.isSafeInteger(v) || v < 0) throw new NativeOptionError(name, v, 'a non-negative integer');
  }
  return { m, n, k, batch, strideA: shape.strideA ?? m * k, strideB: shape.strideB ?? k * n };
}

/**
 * `c = op(a) op(b)` in single precision (row-major, `c` overwritten), with the fastest micro-kernel this CPU
 * supports, threaded for large products. `a`, `b` and `c` may be views into one buffer (e.g. wasm memory).
 *
 * @example
 * ```ts
 * const c = new Float32Array(2 * 2);
 * sgemm(Float32Array.of(1, 2, 3, 4), Float32Array.of(5, 6, 7, 8), c, { m: 2, n: 2, k: 2 }); // [19, 22, 43, 50]
 * ```
 */
export function sgemm(a: Float32Array, b: Float32Array, c: Float32Array, shape: GemmShape): void {
  const s = check(shape);
  addon().gemm(
    a,
    b,
    c,
    s.m,
    s.n,
    s.k,
    shape.transA ?? false,
    shape.transB ?? false,
    s.batch,
    s.strideA,
    s.strideB,
    false,
  );
}

/** The same product by the plain triple loop in double accumulation: the reference {@link sgemm} is tested against. */
export function sgemmReference(a: Float32Array, b: Float32Array, c: Float32Array, shape: GemmShape): void {
  const s = check(shape);
  addon().gemm(
    a,
    b,
    c,
    s.m,
    s.n,
    s.k,
    shape.transA ?? false,
    shape.transB ?? false,
    s.batch,
    s.strideA,
    s.strideB,
    true,
  );
}

/** The micro-kernel in use: `avx512`, `avx2` or `scalar` (set `BADAM_GEMM_KERNEL` to force a narrower one). */
export function gemmKernel(): string {
  return addon().kernelName();
}

/** Threads used for large products; pass a number to change it (default: all hardware threads, or BADAM_THREADS). */
export function gemmThreads(threads?: number): number {
  if (threads !== undefined && (!Number.isSafeInteger(threads) || threads < 1)) {
    throw new NativeOptionError('threads', threads, 'an integer >= 1');
  }
  return threads === undefined ? addon().threads() : addon().threads(threads);
}
