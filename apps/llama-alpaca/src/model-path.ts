import { existsSync } from 'node:fs';
import { UsageError } from '@badam/core';

/** `org/name` as the Hugging Face Hub spells a repository id. */
const HUB_ID = /^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/;

/**
 * Refuses a Hugging Face Hub id (`meta-llama/Llama-3.2-1B`) given where a local model folder is expected:
 * badam-llama reads models from disk only, so the error says how to fetch the model and which folder to
 * pass. A path that exists on disk is never an id, whatever it looks like.
 *
 * @example
 * ```ts
 * refuseHubId('meta-llama/Llama-3.2-1B', 'model_name_or_path');
 * // UsageError: --model_name_or_path meta-llama/Llama-3.2-1B is not a folder here; as a Hugging Face Hub id ...
 * ```
 */
export function refuseHubId(path: string, flag: string): void {
  if (!HUB_ID.test(path) || existsSync(path)) return;
  const folder = `models/${path.split('/')[1]}`;
  throw new UsageError(
    `--${flag} ${path} is not a folder here; as a Hugging Face Hub id it needs fetching first (badam-llama loads models from local folders only): \`huggingface-cli download ${path} --local-dir ${folder}\`, then pass --${flag} ${folder}`,
  );
}
