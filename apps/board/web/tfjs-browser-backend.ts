import '@tensorflow/tfjs-backend-webgpu';
import '@tensorflow/tfjs-backend-webgl';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
// tfjs-core registers no gradients by itself; training needs them.
import '@tensorflow/tfjs-core/dist/register_all_gradients';

/** The browser backends, best first. */
export const BROWSER_BACKENDS = ['webgpu', 'webgl', 'wasm'] as const;

/** A tfjs backend the page can train on. */
export type BrowserBackend = (typeof BROWSER_BACKENDS)[number];

/**
 * The renderer behind WebGL when it is software (SwiftShader, llvmpipe: what headless Chromium and machines
 * without a GPU driver get), else undefined. There WebGL emulates a GPU on the CPU, and tfjs's wasm
 * backend computes the same thing several times faster.
 */
export function softwareWebGlRenderer(): string | undefined {
  const gl = document.createElement('canvas').getContext('webgl2');
  if (gl === null) return undefined;
  const info = gl.getExtension('WEBGL_debug_renderer_info');
  const renderer = String(gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
  gl.getExtension('WEBGL_lose_context')?.loseContext();
  return /swiftshader|llvmpipe|softpipe|software/i.test(renderer) ? renderer : undefined;
}

/**
 * Activates the best tfjs backend this browser offers — WebGPU, then WebGL on a real GPU, then wasm (SIMD,
 * and threads when the page is cross-origin isolated) — or the one asked for. The wasm binaries are served
 * by the board under `wasmPath`. Resolves to the backend in use, with what was passed over and why.
 */
export async function useBestBrowserBackend(
  wasmPath: string,
  wanted?: BrowserBackend,
): Promise<{ backend: BrowserBackend; tried: string[] }> {
  setWasmPaths(wasmPath);
  const tried: string[] = [];
  for (const name of wanted !== undefined ? [wanted] : BROWSER_BACKENDS) {
    if (name === 'webgpu' && !('gpu' in navigator)) {
      tried.push('webgpu: this browser has no navigator.gpu');
      continue;
    }
    const software = name === 'webgl' && wanted === undefined ? softwareWebGlRenderer() : undefined;
    if (software !== undefined) {
      tried.push(`webgl: software rendering (${software}), slower than wasm`);
      continue;
    }
    try {
      if (await tf.setBackend(name)) {
        await tf.ready();
        // A backend can initialise and still fail on first use (a blocklisted GPU): check with a product.
        const probe = tf.tidy(() => tf.matMul(tf.ones([4, 4]), tf.ones([4, 4])).dataSync()[0]);
        if (probe === 4) return { backend: name, tried };
        tried.push(`${name}: computed ${probe} for a known product`);
      } else tried.push(`${name}: did not initialise`);
    } catch (error) {
      tried.push(`${name}: ${(error as Error).message}`);
    }
  }
  throw new Error(
    `no TensorFlow.js backend works in this browser (${tried.join('; ')}): try a browser with WebGL or WebAssembly`,
  );
}
