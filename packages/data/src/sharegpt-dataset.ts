import { BadamOptionError } from '@badam/core';
import type { InstructionExample } from './alpaca-dataset.js';
import type { ChatTurn } from './chat-template.js';

/** Which fields of a ShareGPT record hold what (LLaMA-Factory's `columns` for the sharegpt format). */
export interface ShareGptColumns {
  /** The list of messages. Default `conversations`. */
  messages?: string;
  /** A system prompt beside the messages (a system message first in the list overrides it). */
  system?: string;
}

/** How a message names its role and content (LLaMA-Factory's `tags`). */
export interface ShareGptTags {
  role_tag?: string;
  content_tag?: string;
  user_tag?: string;
  assistant_tag?: string;
  system_tag?: string;
  observation_tag?: string;
  function_tag?: string;
}

/** ShareGPT's own tags (`from` / `value`, `human` / `gpt`), LLaMA-Factory's defaults. */
const SHAREGPT_TAGS: Required<ShareGptTags> = {
  role_tag: 'from',
  content_tag: 'value',
  user_tag: 'human',
  assistant_tag: 'gpt',
  system_tag: 'system',
  observation_tag: 'observation',
  function_tag: 'function_call',
};

/** OpenAI's chat format: `messages` of `role` / `content`, a special case of ShareGPT. */
export const OPENAI_TAGS: Required<ShareGptTags> = {
  role_tag: 'role',
  content_tag: 'content',
  user_tag: 'user',
  assistant_tag: 'assistant',
  system_tag: 'system',
  observation_tag: 'tool',
  function_tag: 'function_call',
};

/**
 * The tags of records like `record` when a dataset_info.json gives none: OpenAI's when its messages use
 * `role`, else ShareGPT's.
 */
export function inferShareGptTags(record: unknown, messagesColumn: string): Required<ShareGptTags> {
  const first = (record as Record<string, unknown> | null)?.[messagesColumn];
  const message = Array.isArray(first) ? (first[0] as Record<string, unknown> | undefined) : undefined;
  return message !== undefined && typeof message === 'object' && 'role' in message
    ? OPENAI_TAGS
    : SHAREGPT_TAGS;
}

/** The messages column of records in a chat format (`messages` or `conversations`), or undefined (Alpaca). */
export function shareGptMessagesColumn(record: unknown): string | undefined {
  if (typeof record !== 'object' || record === null) return undefined;
  for (const column of ['messages', 'conversations'])
    if (Array.isArray((record as Record<string, unknown>)[column])) return column;
  return undefined;
}

/**
 * Converts ShareGPT / OpenAI records (a list of messages per record, LLaMA-Factory's `formatting: sharegpt`)
 * to instruction examples, as LLaMA-Factory's SharegptDatasetConverter: an optional system message first
 * (it overrides the `system` column), then user and assistant messages in turn, ending with the assistant's;
 * every assistant message is learned. A record that breaks the alternation, has a role other than user,
 * assistant or system (tool calls are not supported), or a content that is not a string is an error naming
 * the record and the message.
 *
 * @example
 * ```ts
 * sharegptExamples([{ messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello' }] }],
 *   { messages: 'messages' }, OPENAI_TAGS);
 * ```
 */
export function sharegptExamples(
  records: readonly unknown[],
  columns: ShareGptColumns = {},
  tags: ShareGptTags = {},
  source = 'dataset',
): InstructionExample[] {
  const column = columns.messages ?? 'conversations';
  const t = { ...SHAREGPT_TAGS, ...tags };
  return records.map((record, i) => {
    const where = `${source} record ${i}`;
    if (typeof record !== 'object' || record === null)
      throw new BadamOptionError(where, record, `an object with a "${column}" list of messages`);
    const r = record as Record<string, unknown>;
    const messages = r[column];
    if (!Array.isArray(messages) || messages.length === 0)
      throw new BadamOptionError(`${where} field "${column}"`, messages, 'a non-empty list of messages');
    let system = '';
    if (columns.system !== undefined && r[columns.system] !== undefined && r[columns.system] !== null) {
      if (typeof r[columns.system] !== 'string')
        throw new BadamOptionError(`${where} field "${columns.system}"`, r[columns.system], 'a string');
      system = r[columns.system] as string;
    }
    const read = (j: number) => {
      const m = messages[j] as Record<string, unknown> | null;
      const role = m?.[t.role_tag];
      const content = m?.[t.content_tag];
      if (typeof content !== 'string')
        throw new BadamOptionError(`${where} message ${j} "${t.content_tag}"`, content, 'a string');
      return { role, content };
    };
    let start = 0;
    if (read(0).role === t.system_tag) {
      system = read(0).content;
      start = 1;
    }
    const turns: ChatTurn[] = [];
    const count = messages.length - start;
    if (count === 0 || count % 2 !== 0)
      throw new BadamOptionError(
        `${where} "${column}"`,
        `${count} message(s) after the system message`,
        'user and assistant messages in turn, ending with the assistant (an even number)',
      );
    for (let j = start; j < messages.length; j += 2) {
      const user = read(j);
      const assistant = read(j + 1);
      for (const [m, expected, at] of [
        [user, t.user_tag, j],
        [assistant, t.assistant_tag, j + 1],
      ] as const) {
        if (m.role !== expected)
          throw new BadamOptionError(
            `${where} message ${at} "${t.role_tag}"`,
            m.role,
            `"${expected}" (user and assistant in turn${m.role === t.observation_tag || m.role === t.function_tag ? '; tool calls and observations are not supported' : ''})`,
          );
      }
      turns.push({ user: user.content, assistant: assistant.content });
    }
    return { turns, system };
  });
}
