import { UsageError } from '@badam/core';
import { type ChatTemplate, chatTemplate, MODEL_CHAT_TEMPLATE, modelChatTemplate } from '@badam/data';

/**
 * The chat template a run or a chat uses: the built-in one `name` names (LLaMA-Factory's template names);
 * without a name, the model folder's own `chat_template` (tokenizer_config.json, rendered with Jinja) when it
 * has one, else the built-in `fallback`. `name` may be {@link MODEL_CHAT_TEMPLATE} (what a run records when
 * it used the model's own), which requires the folder to have one.
 *
 * @example
 * ```ts
 * const template = await chooseChatTemplate(undefined, 'models/Qwen2.5-0.5B-Instruct', 'alpaca'); // the model's
 * ```
 */
export async function chooseChatTemplate(
  name: string | undefined,
  modelDir: string | undefined,
  fallback: string,
): Promise<ChatTemplate> {
  if (name !== undefined && name !== MODEL_CHAT_TEMPLATE) return chatTemplate(name);
  const own = modelDir === undefined ? undefined : await modelChatTemplate(modelDir);
  if (own !== undefined) return own;
  if (name === MODEL_CHAT_TEMPLATE)
    throw new UsageError(
      `${modelDir ?? 'the model'} has no chat_template in tokenizer_config.json: pass --template (e.g. llama3, qwen, alpaca)`,
    );
  return chatTemplate(fallback);
}
