import type { FlagSpec } from '@badam/core';
import { useNativeMatMul } from './native-kernels.js';
import { TFJS_BACKEND_CHOICES, type TfjsBackendChoice, useTfjsBackend } from './use-tfjs-backend.js';

/**
 * The command-line flags that choose what {@link prepareTfjsBackend} sets up, for runners built on core's
 * `parseFlags`: `--tfjs_backend` and `--native_kernels`.
 */
export const TFJS_BACKEND_FLAGS: Readonly<Record<'tfjs_backend' | 'native_kernels', FlagSpec>> = {
  tfjs_backend: {
    type: 'string',
    choices: [...TFJS_BACKEND_CHOICES],
    default: 'auto',
    help: 'tfjs backend (tensorflow = tfjs-node)',
  },
  native_kernels: {
    type: 'boolean',
    default: true,
    help: "run tfjs's matrix products on @badam/native's AVX-512/AVX2 SGEMM (cpu and wasm backends)",
  },
};

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
