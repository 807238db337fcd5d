import { BadamOptionError } from '@badam/core';
import type { Template } from '@huggingface/jinja';
import { type JinjaSource, jinjaTurnTexts } from './jinja-chat-template.js';
import { pushAll } from './push-all.js';
import type { Tokenizer } from './tokenizer.js';

/** A piece of a template: literal text (with `{{content}}`), or the tokenizer's BOS / EOS token. */
export type TemplateSlot = string | { readonly token: 'bos' | 'eos' };

/** A chat template as LLaMA-Factory defines one (v0.9.3's `register_template`). */
export interface ChatTemplate {
  readonly name: string;
  /** Before the first turn (Llama 3: BOS). */
  readonly prefix: readonly TemplateSlot[];
  readonly system: readonly TemplateSlot[];
  readonly user: readonly TemplateSlot[];
  readonly assistant: readonly TemplateSlot[];
  /** System prompt used when the example has none. */
  readonly defaultSystem: string;
  /** Strings that end an assistant turn in generation; with `replaceEos` the first becomes the EOS token. */
  readonly stopWords: readonly string[];
  readonly replaceEos: boolean;
  /** Llama 2 puts the system prompt inside the first user message. */
  readonly systemInFirstUser: boolean;
  /**
   * A model's own Jinja template (see `jinjaChatTemplate`): when set, it renders the turns and the slots
   * above are empty.
   */
  readonly jinja?: JinjaSource & { readonly compiled: Template };
}

const EOS = { token: 'eos' } as const;
const BOS = { token: 'bos' } as const;

/** LLaMA-Factory's templates, by name. */
export const CHAT_TEMPLATES: Readonly<Record<string, ChatTemplate>> = {
  default: {
    name: 'default',
    prefix: [],
    system: ['System: {{content}}', EOS, '\n'],
    user: ['Human: {{content}}', EOS, '\nAssistant:'],
    assistant: ['{{content}}', EOS, '\n'],
    defaultSystem: '',
    stopWords: [],
    replaceEos: false,
    systemInFirstUser: false,
  },
  alpaca: {
    name: 'alpaca',
    prefix: [],
    system: ['{{content}}'],
    user: ['### Instruction:\n{{content}}\n\n### Response:\n'],
    assistant: ['{{content}}', EOS, '\n\n'],
    defaultSystem:
      'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n',
    stopWords: [],
    replaceEos: false,
    systemInFirstUser: false,
  },
  llama2: {
    name: 'llama2',
    prefix: [],
    system: ['<<SYS>>\n{{content}}\n<</SYS>>\n\n'],
    user: [BOS, '[INST] {{content}} [/INST]'],
    assistant: ['{{content}}', EOS],
    defaultSystem: '',
    stopWords: [],
    replaceEos: false,
    systemInFirstUser: true,
  },
  llama3: {
    name: 'llama3',
    prefix: [BOS],
    system: ['<|start_header_id|>system<|end_header_id|>\n\n{{content}}<|eot_id|>'],
    user: [
      '<|start_header_id|>user<|end_header_id|>\n\n{{content}}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
    ],
    assistant: ['{{content}}<|eot_id|>'],
    defaultSystem: '',
    stopWords: ['<|eot_id|>', '<|eom_id|>'],
    replaceEos: true,
    systemInFirstUser: false,
  },
  qwen: {
    name: 'qwen',
    prefix: [],
    system: ['<|im_start|>system\n{{content}}<|im_end|>\n'],
    user: ['<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n'],
    assistant: ['{{content}}<|im_end|>\n'],
    defaultSystem: 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.',
    stopWords: ['<|im_end|>'],
    replaceEos: true,
    systemInFirstUser: false,
  },
};

/** The template called `name`, or an error listing the known ones. */
export function chatTemplate(name: string): ChatTemplate {
  const template = CHAT_TEMPLATES[name];
  if (template === undefined) {
    throw new BadamOptionError('template', name, `one of ${Object.keys(CHAT_TEMPLATES).join(', ')}`);
  }
  return template;
}

/** The EOS id a template uses with `tokenizer` (its first stop word when it replaces EOS). */
export function templateEosId(template: ChatTemplate, tokenizer: Tokenizer): number {
  if (template.replaceEos && template.stopWords.length > 0) {
    const id = tokenizer.tokenToId(template.stopWords[0]!);
    if (id === undefined) {
      throw new BadamOptionError(
        'template',
        template.name,
        `a template whose stop word ${template.stopWords[0]} is a token of this tokenizer`,
        'pick the template that matches the model (e.g. llama3 for Llama 3, qwen for Qwen2)',
      );
    }
    return id;
  }
  if (tokenizer.eosTokenId === undefined) {
    throw new BadamOptionError(
      'tokenizer',
      'no eos token',
      'a tokenizer with an EOS token for this template',
    );
  }
  return tokenizer.eosTokenId;
}

/** Ids that end generation with this template: the EOS and every stop word that is a single token. */
export function templateStopIds(template: ChatTemplate, tokenizer: Tokenizer): number[] {
  const ids = new Set([templateEosId(template, tokenizer)]);
  for (const word of template.stopWords) {
    const id = tokenizer.tokenToId(word);
    if (id !== undefined) ids.add(id);
  }
  return [...ids];
}

function encodeSlots(
  slots: readonly TemplateSlot[],
  content: string,
  tokenizer: Tokenizer,
  eos: number,
): number[] {
  const ids: number[] = [];
  for (const slot of slots) {
    if (typeof slot === 'string') {
      const text = slot.replace('{{content}}', content);
      if (text.length > 0) pushAll(ids, tokenizer.encode(text, { addSpecialTokens: false }));
    } else if (slot.token === 'eos') {
      ids.push(eos);
    } else if (tokenizer.bosTokenId !== undefined) {
      ids.push(tokenizer.bosTokenId);
    }
  }
  return ids;
}

/** One user / assistant exchange. */
export interface ChatTurn {
  readonly user: string;
  readonly assistant: string;
}

/**
 * Token ids of each turn as (prompt, response) pairs, LLaMA-Factory's `encode_multiturn`: the first prompt
 * carries the prefix and the system message (the default when `system` is empty); every template slot is
 * tokenized on its own, without the tokenizer's automatic special tokens.
 */
export function encodeTurns(
  template: ChatTemplate,
  tokenizer: Tokenizer,
  turns: readonly ChatTurn[],
  system = '',
): Array<{ prompt: number[]; response: number[] }> {
  const eos = templateEosId(template, tokenizer);
  const systemText = system || template.defaultSystem;
  if (template.jinja !== undefined) {
    const encode = (text: string) =>
      text.length > 0 ? tokenizer.encode(text, { addSpecialTokens: false }) : [];
    return jinjaTurnTexts(template.jinja, turns, systemText).map(({ prompt, response }) => ({
      prompt: encode(prompt),
      response: encode(response),
    }));
  }
  return turns.map((turn, i) => {
    const prompt: number[] = [];
    let user = turn.user;
    if (i === 0) {
      pushAll(prompt, encodeSlots(template.prefix, '', tokenizer, eos));
      if (systemText) {
        if (template.systemInFirstUser) {
          user =
            template.system
              .map((s) => (typeof s === 'string' ? s.replace('{{content}}', systemText) : ''))
              .join('') + user;
        } else {
          pushAll(prompt, encodeSlots(template.system, systemText, tokenizer, eos));
        }
      }
    }
    pushAll(prompt, encodeSlots(template.user, user, tokenizer, eos));
    const response = encodeSlots(template.assistant, turn.assistant, tokenizer, eos);
    return { prompt, response };
  });
}

/** Token ids of a generation prompt: the turns so far, then `user` and the assistant's opening. */
export function encodeGenerationPrompt(
  template: ChatTemplate,
  tokenizer: Tokenizer,
  history: readonly ChatTurn[],
  user: string,
  system = '',
): number[] {
  const pairs = encodeTurns(template, tokenizer, [...history, { user, assistant: '' }], system);
  const ids: number[] = [];
  pairs.forEach((pair, i) => {
    pushAll(ids, pair.prompt);
    if (i < pairs.length - 1) pushAll(ids, pair.response);
  });
  return ids;
}
