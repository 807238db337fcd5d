import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type FlagSpec, UsageError } from '@badam/core';
import { chatTemplateJinja } from '@badam/data';
import { readLlamaConfig, saveLlama } from '@badam/models';
import { loadLlamaWithAdapters, modelFolders } from './adapters.js';
import { chooseChatTemplate } from './chat-template-choice.js';
import { writeModelFiles } from './model-files.js';
import { refuseHubId } from './model-path.js';

/** `badam-llama export`'s flags: LLaMA-Factory's `llamafactory-cli export` names. */
export const EXPORT_FLAGS: Readonly<Record<string, FlagSpec>> = {
  model_name_or_path: {
    type: 'string',
    help: 'the base model folder (or a LoRA run output folder, whose adapter_config.json names its base)',
  },
  adapter_name_or_path: {
    type: 'string',
    help: 'LoRA adapter folder(s), comma-separated, merged into the base in order',
    aka: 'LLaMA-Factory',
  },
  export_dir: {
    type: 'string',
    help: 'where the merged model goes (a new or empty folder)',
    aka: 'LLaMA-Factory',
  },
  export_size: {
    type: 'number',
    min: 0,
    exclusiveMin: true,
    default: 5,
    help: 'largest safetensors shard, in GB (10^9 bytes, as Hugging Face counts)',
    aka: 'LLaMA-Factory',
  },
  infer_dtype: {
    type: 'string',
    choices: ['auto', 'float32', 'bfloat16', 'float16'],
    default: 'auto',
    help: "the exported weights' dtype; auto: the base model's torch_dtype",
    aka: 'LLaMA-Factory',
  },
  template: {
    type: 'string',
    help: "the chat template to keep in tokenizer_config.json (default: the adapter's run's, else the model's own)",
  },
  export_device: { type: 'string', help: 'ignored: export merges on the CPU', aka: 'LLaMA-Factory' },
  export_legacy_format: {
    type: 'boolean',
    help: 'ignored: export writes safetensors (the non-legacy format) only',
    aka: 'LLaMA-Factory',
  },
  trust_remote_code: {
    type: 'boolean',
    help: "ignored: only badam-llama's own Llama code runs",
    aka: 'LLaMA-Factory',
  },
  overwrite_output_dir: { type: 'boolean', default: false, help: 'write into a non-empty --export_dir' },
  help: { type: 'boolean', default: false, help: 'show this help' },
};

/** The dtype a model folder's config.json names (`torch_dtype`, or transformers 5's `dtype`); fp32 otherwise. */
async function configDtype(directory: string): Promise<'float32' | 'bfloat16' | 'float16'> {
  const json = JSON.parse(await readFile(join(directory, 'config.json'), 'utf8')) as Record<string, unknown>;
  const named = json.torch_dtype ?? json.dtype;
  return named === 'bfloat16' || named === 'float16' ? named : 'float32';
}

/**
 * `badam-llama export`, as `llamafactory-cli export`: loads the base model, merges each LoRA adapter into
 * it, and writes a plain Hugging Face model folder (`model.safetensors` or shards of at most
 * `--export_size` GB with `model.safetensors.index.json`, `config.json`, the tokenizer files with the chat
 * template in tokenizer_config.json, `special_tokens_map.json`, `generation_config.json`) that loads
 * without peft. Returns the folder's files.
 */
export async function runExport(
  values: Record<string, unknown>,
  io: { log(m: string): void; warn(m: string): void },
  recordedTemplate: (dir: string) => Promise<string | undefined>,
): Promise<string[]> {
  const model = values.model_name_or_path as string | undefined;
  const out = values.export_dir as string | undefined;
  if (model === undefined || out === undefined)
    throw new UsageError(
      'export needs --model_name_or_path (the base) and --export_dir (where the merged model goes)',
    );
  refuseHubId(model, 'model_name_or_path');
  if (existsSync(out) && (await readdir(out)).length > 0 && values.overwrite_output_dir !== true)
    throw new UsageError(
      `--export_dir ${out} is not empty: choose a new folder, or add --overwrite_output_dir`,
    );
  for (const ignored of ['export_device', 'export_legacy_format', 'trust_remote_code'])
    if (values[ignored] !== undefined)
      io.warn(`badam-llama: --${ignored} is ignored: ${EXPORT_FLAGS[ignored]!.help.slice(9)}`);
  const adapters = ((values.adapter_name_or_path as string | undefined) ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const folders = await modelFolders(model, adapters);
  const { model: merged, tokenizer } = await loadLlamaWithAdapters(folders, { keepLast: false }, io.warn);
  try {
    const requested = values.infer_dtype as 'auto' | 'float32' | 'bfloat16' | 'float16';
    const dtype = requested === 'auto' ? await configDtype(folders.base) : requested;
    const lastAdapter = folders.adapters.at(-1);
    const template = await chooseChatTemplate(
      (values.template as string | undefined) ??
        (lastAdapter !== undefined ? await recordedTemplate(lastAdapter) : undefined) ??
        (await recordedTemplate(model)),
      folders.tokenizerDir,
      'alpaca',
      (message) => io.warn(`badam-llama: ${message}`),
    );
    const files = await saveLlama(merged, out, {
      dtype,
      maxShardBytes: Math.round((values.export_size as number) * 1e9),
    });
    await writeModelFiles(out, {
      config: await readLlamaConfig(folders.base),
      tokenizer,
      sourceDir: folders.tokenizerDir,
      dtype,
      chatTemplate: chatTemplateJinja(template),
    });
    const written = [
      ...files,
      'tokenizer.json',
      'tokenizer_config.json',
      'special_tokens_map.json',
      'generation_config.json',
    ];
    io.log(
      `badam-llama: exported ${folders.base}${folders.adapters.length > 0 ? ` with ${folders.adapters.join(', ')} merged` : ''} to ${out} (${dtype}, template ${template.name}): ${written.filter((f) => existsSync(join(out, f))).join(', ')}`,
    );
    return written;
  } finally {
    merged.dispose();
  }
}
