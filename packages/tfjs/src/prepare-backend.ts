import { useNativeMatMul } from './native-kernels.js';
import { type TfjsBackendChoice, useTfjsBackend } from './runtime.js';

/**
 * Activates a tfjs backend and, on cpu and wasm unless `nativeKernels` is false, @badam/native's matrix
 * multiply (a warning, not an error, when it is not built). Returns a label such as `wasm + native avx512 x2`.
 */
export async function prepareTfjsBackend(
  choice: TfjsBackendChoice,
  options: { nativeKernels?: boolean; warn?: (message: string) => void } = {},
): Promise<string> {
  const backend = await useTfjsBackend(choice);
  if (options.nativeKernels === false || (backend !== 'wasm' && backend !== 'cpu')) return backend;
  try {
    const { kernel, threads } = await useNativeMatMul();
    return `${backend} + native ${kernel} x${threads}`;
  } catch (error) {
    (options.warn ?? console.warn)(
      `native kernels unavailable, using tfjs's own matmul: ${(error as Error).message}`,
    );
    return backend;
  }
}
