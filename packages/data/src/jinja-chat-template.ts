import { join } from 'node:path';
import { BadamOptionError } from '@badam/core';
import { Template } from '@huggingface/jinja';
import { renderJinjaBounded } from './bounded-jinja.js';
import type { ChatTemplate } from './chat-template.js';
import { readTextFile } from './text-file.js';

/** The name a template rendered from a model's own `chat_template` goes by. */
export const MODEL_CHAT_TEMPLATE = 'chat_template';

/** A model's Jinja chat template (tokenizer_config.json's `chat_template`) and what it renders with. */
export interface JinjaSource {
  readonly source: string;
  /** Special-token texts the template may use (`bos_token`, `eos_token`), from tokenizer_config.json. */
  readonly bosToken?: string | undefined;
  readonly eosToken?: string | undefined;
}

/** A chat message as chat templates take them. */
interface Message {
  readonly role: 'system' | 'user' | 'assistant';
  readonly content: string;
}

/**
 * The chat template a model ships (tokenizer_config.json's `chat_template`, a Jinja template as
 * `transformers`' `apply_chat_template` renders it), as a {@link ChatTemplate}: Mistral, Gemma, Qwen 2.5,
 * Llama 3.x work without a built-in template. The template renders whole conversations; encodeTurns splits
 * them into each turn's prompt and response by rendering the conversation up to each point.
 *
 * @example
 * ```ts
 * const config = JSON.parse(await readFile('Qwen2.5-0.5B-Instruct/tokenizer_config.json', 'utf8'));
 * const template = jinjaChatTemplate({ source: config.chat_template, eosToken: config.eos_token });
 * ```
 */
export function jinjaChatTemplate(jinja: JinjaSource): ChatTemplate {
  let compiled: Template;
  try {
    compiled = new Template(jinja.source);
  } catch (error) {
    throw new BadamOptionError(
      'tokenizer_config.json chat_template',
      `${jinja.source.slice(0, 40)}...`,
      'a Jinja template @huggingface/jinja can parse',
      `${(error as Error).message}; pass --template with a built-in template instead`,
    );
  }
  return {
    name: MODEL_CHAT_TEMPLATE,
    prefix: [],
    system: [],
    user: [],
    assistant: [],
    defaultSystem: '',
    stopWords: [],
    replaceEos: false,
    systemInFirstUser: false,
    jinja: { ...jinja, compiled },
  };
}

/**
 * Renders `messages` with a model's template, as `apply_chat_template(..., tokenize=False)` does, within
 * {@link JINJA_RENDER_LIMITS} (time, `range()` elements, text size): a template past one is an error.
 */
export function renderChatTemplate(
  jinja: JinjaSource & { readonly compiled: Template },
  messages: readonly Message[],
  addGenerationPrompt: boolean,
): string {
  try {
    return renderJinjaBounded(jinja.compiled, {
      messages: messages.map((m) => ({ ...m })),
      add_generation_prompt: addGenerationPrompt,
      bos_token: jinja.bosToken ?? '',
      eos_token: jinja.eosToken ?? '',
    });
  } catch (error) {
    throw new BadamOptionError(
      'tokenizer_config.json chat_template',
      'render',
      'a template that renders user / assistant / system messages',
      `${(error as Error).message}; pass --template with a built-in template instead`,
    );
  }
}

/**
 * Each turn's prompt and response text under a model's template: the prompt is what the conversation up to
 * the user's message (with the generation prompt) adds to the conversation before it, the response what the
 * assistant's answer adds after that, the template's end-of-turn tokens included.
 */
export function jinjaTurnTexts(
  jinja: JinjaSource & { readonly compiled: Template },
  turns: ReadonlyArray<{ readonly user: string; readonly assistant: string }>,
  system: string,
): Array<{ prompt: string; response: string }> {
  const messages: Message[] = system ? [{ role: 'system', content: system }] : [];
  let before = '';
  return turns.map((turn) => {
    messages.push({ role: 'user', content: turn.user });
    const prompt = renderChatTemplate(jinja, messages, true);
    messages.push({ role: 'assistant', content: turn.assistant });
    const full = renderChatTemplate(jinja, messages, false);
    if (!prompt.startsWith(before) || !full.startsWith(prompt)) {
      throw new BadamOptionError(
        'tokenizer_config.json chat_template',
        'render',
        'a template whose rendering of a conversation starts with its rendering of the conversation so far',
        'it rewrites earlier turns (some templates drop reasoning from past turns); pass --template with a built-in template instead',
      );
    }
    const texts = { prompt: prompt.slice(before.length), response: full.slice(prompt.length) };
    before = full;
    return texts;
  });
}

/** The text of a tokenizer_config.json special-token setting (`"<s>"` or `{ "content": "<s>", ... }`). */
function tokenText(setting: unknown): string | undefined {
  if (typeof setting === 'string') return setting;
  const content = (setting as { content?: unknown } | null)?.content;
  return typeof content === 'string' ? content : undefined;
}

/**
 * The chat template a model folder ships in its tokenizer_config.json (`chat_template`: a string, or a
 * list of named templates, of which `default` is taken), with its BOS and EOS texts; undefined when it has
 * none (or no tokenizer_config.json).
 */
export async function modelChatTemplate(directory: string): Promise<ChatTemplate | undefined> {
  // A pipe, a device or a file that is not UTF-8 is refused by name; a missing or unparsable one has no template.
  const text = await readTextFile(join(directory, 'tokenizer_config.json'), 'tokenizer file', {
    optional: true,
  });
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(text ?? 'null') as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (typeof config !== 'object' || config === null) return undefined;
  const setting = config.chat_template;
  const source =
    typeof setting === 'string'
      ? setting
      : Array.isArray(setting)
        ? (setting as Array<{ name?: unknown; template?: unknown }>).find((t) => t.name === 'default')
            ?.template
        : undefined;
  if (typeof source !== 'string') return undefined;
  return jinjaChatTemplate({
    source,
    bosToken: tokenText(config.bos_token),
    eosToken: tokenText(config.eos_token),
  });
}
