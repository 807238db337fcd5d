import { UsageError } from '@badam/core';
import {
  CHAT_TEMPLATES,
  type ChatTemplate,
  chatTemplate,
  MODEL_CHAT_TEMPLATE,
  modelChatTemplate,
} from '@badam/data';

/**
 * The chat template a run or a chat uses: the built-in one `name` names (LLaMA-Factory's template names);
 * a name that is not built in (LLaMA-Factory has many more: `qwen3`, `mistral`, `gemma`...) or
 * {@link MODEL_CHAT_TEMPLATE} (what a run records when it used the model's own) takes the model folder's own
 * `chat_template` (tokenizer_config.json, rendered with Jinja), which must then exist; without a name, the
 * model's own when it has one, else the built-in `fallback`. `note` hears which template a name that is
 * not built in turned into.
 *
 * @example
 * ```ts
 * const template = await chooseChatTemplate('qwen3_nothink', 'models/Qwen3-0.6B', 'alpaca'); // the model's
 * ```
 */
export async function chooseChatTemplate(
  name: string | undefined,
  modelDir: string | undefined,
  fallback: string,
  note: (message: string) => void = () => {},
): Promise<ChatTemplate> {
  if (name !== undefined && CHAT_TEMPLATES[name] !== undefined) return chatTemplate(name);
  const own = modelDir === undefined ? undefined : await modelChatTemplate(modelDir);
  if (own !== undefined) {
    if (name !== undefined && name !== MODEL_CHAT_TEMPLATE)
      note(
        `--template ${name} is not one of the built-in templates (${Object.keys(CHAT_TEMPLATES).join(', ')}): using the model's own chat_template from ${modelDir}/tokenizer_config.json`,
      );
    return own;
  }
  if (name === MODEL_CHAT_TEMPLATE)
    throw new UsageError(
      `${modelDir ?? 'the model'} has no chat_template in tokenizer_config.json: pass --template (e.g. llama3, qwen, alpaca)`,
    );
  if (name !== undefined)
    throw new UsageError(
      `--template ${name} is not built in (${Object.keys(CHAT_TEMPLATES).join(', ')}), and ${modelDir ?? 'the built-in model'} has no chat_template in tokenizer_config.json to use for it: pass one of the built-in templates`,
    );
  return chatTemplate(fallback);
}
