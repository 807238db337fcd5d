import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ByteTokenizer, type Tokenizer } from '@badam/data';
import { type LlamaConfig, llamaConfigToHf } from '@badam/models';
import { writeFileAtomic } from '@badam/safetensors';

/** What {@link writeModelFiles} needs to know about the model. */
export interface ModelFilesSource {
  /** The model's config (of a tfjs model or of one on the device). */
  readonly config: LlamaConfig;
  readonly tokenizer: Tokenizer;
  /** The folder the model was loaded from (its tokenizer files are copied); undefined: built in. */
  readonly sourceDir: string | undefined;
  /** Storage dtype the config names (`torch_dtype`). */
  readonly dtype: 'float32' | 'bfloat16' | 'float16';
  /**
   * The Jinja chat template the model was trained with (`chatTemplateJinja`), kept in tokenizer_config.json
   * so that the folder carries its template wherever it goes; undefined: the source's is kept as it is.
   */
  readonly chatTemplate?: string;
}

const json = (value: unknown) => [`${JSON.stringify(value, null, 2)}\n`];

async function readOptional(path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path);
  } catch {
    return undefined;
  }
}

/** The text of a tokenizer_config.json special-token setting (`"<s>"` or `{ "content": "<s>", ... }`). */
function tokenText(setting: unknown): string | undefined {
  if (typeof setting === 'string') return setting;
  const content = (setting as { content?: unknown } | null)?.content;
  return typeof content === 'string' ? content : undefined;
}

/**
 * Writes the files beside the weights that make `directory` a Hugging Face model folder as LLaMA-Factory
 * leaves one: `tokenizer.json`, `tokenizer_config.json`, `special_tokens_map.json`,
 * `generation_config.json`, and with `config: true` also `config.json` (`saveLlama` writes it with the
 * weights; a checkpoint's weights come from the checkpoint store, so it needs it here). Files the source
 * folder has are copied as they are; the others are made from the model's config and the tokenizer.
 */
export async function writeModelFiles(
  directory: string,
  source: ModelFilesSource,
  { config = false }: { config?: boolean } = {},
): Promise<void> {
  const hfConfig: Record<string, unknown> = {
    ...llamaConfigToHf(source.config),
    torch_dtype: source.dtype,
  };
  if (config) await writeFileAtomic(join(directory, 'config.json'), json(hfConfig));
  const fromSource = async (file: string) =>
    source.sourceDir === undefined ? undefined : readOptional(join(source.sourceDir, file));

  let tokenizerConfig: Record<string, unknown> | undefined;
  if (source.tokenizer instanceof ByteTokenizer) {
    const { tokenizer, config: byteConfig } = source.tokenizer.toHuggingFace();
    tokenizerConfig = byteConfig;
    await writeFileAtomic(join(directory, 'tokenizer.json'), json(tokenizer));
  } else {
    const bytes = await fromSource('tokenizer.json');
    if (bytes !== undefined) await writeFileAtomic(join(directory, 'tokenizer.json'), [bytes]);
    const configBytes = await fromSource('tokenizer_config.json');
    if (configBytes !== undefined) tokenizerConfig = JSON.parse(configBytes.toString('utf8'));
  }
  if (tokenizerConfig !== undefined || source.chatTemplate !== undefined) {
    tokenizerConfig = {
      ...(tokenizerConfig ?? {}),
      ...(source.chatTemplate !== undefined ? { chat_template: source.chatTemplate } : {}),
    };
    await writeFileAtomic(join(directory, 'tokenizer_config.json'), json(tokenizerConfig));
  }
  tokenizerConfig ??= {};

  const specialTokens = await fromSource('special_tokens_map.json');
  await writeFileAtomic(
    join(directory, 'special_tokens_map.json'),
    specialTokens !== undefined
      ? [specialTokens]
      : json(
          Object.fromEntries(
            ['bos_token', 'eos_token', 'unk_token', 'pad_token']
              .map((key) => [key, tokenText(tokenizerConfig[key])] as const)
              .filter(([, text]) => text !== undefined),
          ),
        ),
  );

  const generation = await fromSource('generation_config.json');
  await writeFileAtomic(
    join(directory, 'generation_config.json'),
    generation !== undefined
      ? [generation]
      : json({
          _from_model_config: true,
          bos_token_id: hfConfig.bos_token_id ?? null,
          eos_token_id: hfConfig.eos_token_id ?? null,
          pad_token_id: hfConfig.pad_token_id ?? null,
        }),
  );
}
