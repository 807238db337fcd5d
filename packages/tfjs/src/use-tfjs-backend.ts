import { BadamOptionError } from '@badam/core';
import * as tf from '@tensorflow/tfjs-core';

/** Which tfjs backend to run on. `tensorflow` is libtensorflow through tfjs-node / tfjs-node-gpu. */
export type TfjsBackendChoice = 'auto' | 'cpu' | 'wasm' | 'tensorflow';

/** The choices, for validation and CLI help. */
export const TFJS_BACKEND_CHOICES: readonly TfjsBackendChoice[] = ['auto', 'cpu', 'wasm', 'tensorflow'];

/** What each backend needs installed; none is a hard dependency of @badam/tfjs. */
const PROVIDERS: Record<Exclude<TfjsBackendChoice, 'auto'>, readonly string[]> = {
  // tfjs-node-gpu first: when both are installed the GPU build is the one the user went out of the way for.
  tensorflow: ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'],
  wasm: ['@tensorflow/tfjs-backend-wasm'],
  cpu: ['@tensorflow/tfjs-backend-cpu'],
};

async function tryImport(specifier: string): Promise<string | undefined> {
  try {
    await import(specifier);
    return undefined;
  } catch (error) {
    return `${specifier}: ${(error as Error).message.split('\n')[0]}`;
  }
}

/**
 * Loads and activates a tfjs backend, detecting the optional packages at run time:
 * `tensorflow` needs `@tensorflow/tfjs-node-gpu` or `@tensorflow/tfjs-node`, `wasm`
 * `@tensorflow/tfjs-backend-wasm`, `cpu` `@tensorflow/tfjs-backend-cpu` (part of `@tensorflow/tfjs`).
 * `auto` takes the first that loads of tensorflow, wasm, cpu. Resolves to the active backend's name.
 *
 * @example
 * ```ts
 * await useTfjsBackend('auto'); // 'tensorflow' with tfjs-node installed, else 'wasm', else 'cpu'
 * ```
 */
export async function useTfjsBackend(choice: TfjsBackendChoice = 'auto'): Promise<string> {
  if (!TFJS_BACKEND_CHOICES.includes(choice)) {
    throw new BadamOptionError('backend', choice, `one of ${TFJS_BACKEND_CHOICES.join(', ')}`);
  }
  const order: Array<Exclude<TfjsBackendChoice, 'auto'>> =
    choice === 'auto' ? ['tensorflow', 'wasm', 'cpu'] : [choice];
  const failures: string[] = [];
  for (const backend of order) {
    if (tf.findBackendFactory(backend) === null) {
      for (const specifier of PROVIDERS[backend]) {
        const failure = await tryImport(specifier);
        if (failure === undefined && tf.findBackendFactory(backend) !== null) break;
        if (failure !== undefined) failures.push(failure);
      }
    }
    if (tf.findBackendFactory(backend) !== null && (await tf.setBackend(backend))) {
      await tf.ready();
      return tf.getBackend();
    }
  }
  const wanted = order.flatMap((b) => PROVIDERS[b]).join(' or ');
  throw new Error(
    `no tfjs backend could be loaded for "${choice}": install ${wanted} next to @badam/tfjs ` +
      `(e.g. npm install ${PROVIDERS[order[0]!][PROVIDERS[order[0]!].length - 1]}). Tried: ${failures.join('; ')}`,
  );
}
