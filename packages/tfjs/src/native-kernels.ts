import * as tf from '@tensorflow/tfjs-core';

/** What {@link useNativeMatMul} installed. */
export interface NativeMatMulInfo {
  /** The micro-kernel of @badam/native (`avx512`, `avx2` or `scalar`). */
  readonly kernel: string;
  /** Threads it uses. */
  readonly threads: number;
  /** The tfjs backends whose BatchMatMul kernel now runs natively. */
  readonly backends: readonly string[];
}

interface NativeModule {
  nativeAvailable(): boolean;
  nativeUnavailableReason(): string | undefined;
  sgemm(a: Float32Array, b: Float32Array, c: Float32Array, shape: Record<string, number | boolean>): void;
  gemmKernel(): string;
  gemmThreads(): number;
}

interface MatMulShapes {
  outShape: number[];
  m: number;
  n: number;
  k: number;
  batch: number;
  strideA: number;
  strideB: number;
}

/** Shapes of a BatchMatMul, or undefined when its batch broadcast is not a plain "one side has batch 1". */
function matMulShapes(
  a: tf.TensorInfo,
  b: tf.TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
): MatMulShapes | undefined {
  const ra = a.shape.length;
  const rb = b.shape.length;
  const m = transposeA ? a.shape[ra - 1]! : a.shape[ra - 2]!;
  const k = transposeA ? a.shape[ra - 2]! : a.shape[ra - 1]!;
  const kb = transposeB ? b.shape[rb - 1]! : b.shape[rb - 2]!;
  const n = transposeB ? b.shape[rb - 2]! : b.shape[rb - 1]!;
  if (k !== kb) return undefined;
  const outerA = a.shape.slice(0, -2);
  const outerB = b.shape.slice(0, -2);
  const batchA = outerA.reduce((x, y) => x * y, 1);
  const batchB = outerB.reduce((x, y) => x * y, 1);
  let outer: number[];
  if (batchA === batchB && outerA.join() === outerB.join()) outer = outerA;
  else if (batchB === 1) outer = outerA;
  else if (batchA === 1) outer = outerB;
  else return undefined;
  return {
    outShape: [...outer, m, n],
    m,
    n,
    k,
    batch: Math.max(batchA, batchB),
    strideA: batchA === 1 ? 0 : m * k,
    strideB: batchB === 1 ? 0 : k * n,
  };
}

interface WasmBackend {
  makeOutput(shape: number[], dtype: string): tf.TensorInfo;
  dataIdMap: { get(dataId: unknown): { memoryOffset: number } };
  wasm: { HEAPU8: Uint8Array };
}

interface CpuBackend {
  data: { get(dataId: unknown): { values: Float32Array } };
  makeTensorInfo(shape: number[], dtype: string, values: Float32Array): tf.TensorInfo;
}

/**
 * Replaces tfjs's BatchMatMul kernel on the `wasm` and `cpu` backends with @badam/native's SGEMM (blocked,
 * AVX-512 / AVX2, threaded), reading and writing the tensors where the backend keeps them (the wasm heap,
 * or the cpu backend's typed arrays) without copies. Products the native path does not cover (non-float32,
 * batch broadcasts other than one side of batch 1) still go to the original kernel. Gradients of matMul are
 * matMuls, so training speeds up too.
 *
 * `@badam/native` is an optional peer: when it is missing or not built this rejects with the reason.
 *
 * @example
 * ```ts
 * await useTfjsBackend('wasm');
 * const { kernel, threads } = await useNativeMatMul(); // e.g. avx512, 2
 * ```
 */
export async function useNativeMatMul(): Promise<NativeMatMulInfo> {
  let native: NativeModule;
  try {
    native = (await import('@badam/native' as string)) as NativeModule;
  } catch (error) {
    throw new Error(
      `native kernels need @badam/native installed next to @badam/tfjs (${(error as Error).message.split('\n')[0]})`,
    );
  }
  if (!native.nativeAvailable())
    throw new Error(native.nativeUnavailableReason() ?? '@badam/native is not available');
  const backends: string[] = [];
  for (const backendName of ['wasm', 'cpu']) {
    if (tf.findBackendFactory(backendName) === null) continue;
    const original = tf.getKernel('BatchMatMul', backendName);
    if (original === undefined) continue;
    if ((original.kernelFunc as { badamNative?: boolean }).badamNative) {
      backends.push(backendName);
      continue;
    }
    const kernelFunc = (args: {
      inputs: tf.NamedTensorInfoMap;
      backend: unknown;
      attrs: Record<string, unknown>;
    }) => {
      const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
      const transposeA = Boolean(args.attrs.transposeA);
      const transposeB = Boolean(args.attrs.transposeB);
      const shapes =
        a.dtype === 'float32' && b.dtype === 'float32'
          ? matMulShapes(a, b, transposeA, transposeB)
          : undefined;
      if (shapes === undefined) return original.kernelFunc(args as never);
      const size = (s: number[]) => s.reduce((x, y) => x * y, 1);
      const shape = {
        m: shapes.m,
        n: shapes.n,
        k: shapes.k,
        transA: transposeA,
        transB: transposeB,
        batch: shapes.batch,
        strideA: shapes.strideA,
        strideB: shapes.strideB,
      };
      if (backendName === 'wasm') {
        const backend = args.backend as WasmBackend;
        const out = backend.makeOutput(shapes.outShape, 'float32');
        // Read the heap after allocating the output: the allocation may have grown (replaced) it.
        const heap = backend.wasm.HEAPU8.buffer;
        const view = (t: tf.TensorInfo) =>
          new Float32Array(heap, backend.dataIdMap.get(t.dataId).memoryOffset, size(t.shape));
        native.sgemm(view(a), view(b), view(out), shape);
        return out;
      }
      const backend = args.backend as CpuBackend;
      const values = new Float32Array(size(shapes.outShape));
      native.sgemm(backend.data.get(a.dataId).values, backend.data.get(b.dataId).values, values, shape);
      return backend.makeTensorInfo(shapes.outShape, 'float32', values);
    };
    Object.assign(kernelFunc, { badamNative: true });
    tf.unregisterKernel('BatchMatMul', backendName);
    tf.registerKernel({
      ...original,
      kernelName: 'BatchMatMul',
      backendName,
      kernelFunc: kernelFunc as never,
    });
    backends.push(backendName);
  }
  return { kernel: native.gemmKernel(), threads: native.gemmThreads(), backends };
}
