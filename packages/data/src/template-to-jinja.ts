import type { ChatTemplate, TemplateSlot } from './chat-template.js';

/** A Jinja string literal of `text` (single-quoted, with backslash escapes). */
function literal(text: string): string {
  return `'${text.replaceAll('\\', '\\\\').replaceAll("'", "\\'").replaceAll('\n', '\\n').replaceAll('\r', '\\r').replaceAll('\t', '\\t')}'`;
}

/**
 * A Jinja expression of a template's slots with `{{content}}` filled by the expression `content`: literal
 * text, the BOS token and the EOS token (the template's first stop word where it replaces EOS).
 */
function slotsExpression(template: ChatTemplate, slots: readonly TemplateSlot[], content: string): string {
  const eos =
    template.replaceEos && template.stopWords.length > 0 ? literal(template.stopWords[0]!) : 'eos_token';
  const parts: string[] = [];
  for (const slot of slots) {
    if (typeof slot !== 'string') {
      parts.push(slot.token === 'eos' ? eos : 'bos_token');
      continue;
    }
    const [before, ...after] = slot.split('{{content}}');
    if (before) parts.push(literal(before));
    if (after.length > 0) {
      parts.push(content);
      const rest = after.join('{{content}}');
      if (rest) parts.push(literal(rest));
    }
  }
  return parts.length > 0 ? parts.join(' + ') : "''";
}

/**
 * The Jinja `chat_template` (Hugging Face's tokenizer_config.json key) that renders conversations as a
 * built-in {@link ChatTemplate} encodes them, so that a model trained with `--template llama3` keeps its
 * template for `apply_chat_template`, vLLM, LLaMA-Factory's `chat` and badam-llama's own: prefix, the system
 * prompt (the messages' own, else the template's default) before the first user message (Llama 2: inside
 * it), each user message with the assistant's opening, each assistant message with its end. A template
 * that came from a model's own `chat_template` gives that source back.
 *
 * @example
 * ```ts
 * config.chat_template = chatTemplateJinja(chatTemplate('llama3'));
 * ```
 */
export function chatTemplateJinja(template: ChatTemplate): string {
  if (template.jinja !== undefined) return template.jinja.source;
  const system = (content: string) => slotsExpression(template, template.system, content);
  const firstUser = template.systemInFirstUser
    ? `{%- if system_message -%}{{ ${slotsExpression(template, template.user, `(${system('system_message')}) + message['content']`)} }}{%- else -%}{{ ${slotsExpression(template, template.user, "message['content']")} }}{%- endif -%}`
    : `{%- if system_message -%}{{ ${system('system_message')} }}{%- endif -%}{{ ${slotsExpression(template, template.user, "message['content']")} }}`;
  return [
    `{%- set system_message = ${literal(template.defaultSystem)} -%}`,
    "{%- if messages[0]['role'] == 'system' -%}{%- set system_message = messages[0]['content'] -%}{%- endif -%}",
    template.prefix.length > 0 ? `{{ ${slotsExpression(template, template.prefix, "''")} }}` : '',
    '{%- set ns = namespace(first=true) -%}',
    '{%- for message in messages -%}',
    "{%- if message['role'] == 'user' -%}",
    `{%- if ns.first -%}${firstUser}{%- set ns.first = false -%}`,
    `{%- else -%}{{ ${slotsExpression(template, template.user, "message['content']")} }}{%- endif -%}`,
    "{%- elif message['role'] == 'assistant' -%}",
    `{{ ${slotsExpression(template, template.assistant, "message['content']")} }}`,
    '{%- endif -%}',
    '{%- endfor -%}',
  ].join('');
}
