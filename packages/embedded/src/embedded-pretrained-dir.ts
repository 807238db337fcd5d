import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The folder of the pretrained start that ships with this package: the built-in tiny Llama after
 * `badam-llama pretrain` (a Hugging Face folder: config.json, model.safetensors, and pretraining.json with
 * the settings and the loss it reached). The embedded default and `compare` fine-tune from it. A function,
 * not a constant, so that importing the package in a browser never touches Node's path modules.
 */
export function embeddedPretrainedDir(): string {
  // dist/embedded-pretrained-dir.js when built, src/embedded-pretrained-dir.ts from source: the package is one up.
  return join(dirname(dirname(fileURLToPath(import.meta.url))), 'assets', 'embedded-pretrained');
}
