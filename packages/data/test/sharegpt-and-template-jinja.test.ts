import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  ByteTokenizer,
  CHAT_TEMPLATES,
  chatTemplateJinja,
  encodeTurns,
  jinjaChatTemplate,
  loadInstructionDataset,
  OPENAI_TAGS,
  sharegptExamples,
  type Tokenizer,
} from '../src/index.js';

const root = mkdtempSync(join(tmpdir(), 'badam-sharegpt-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('ShareGPT and OpenAI datasets', () => {
  const conversation = [
    { from: 'system', value: 'Be brief.' },
    { from: 'human', value: 'Hi' },
    { from: 'gpt', value: 'Hello.' },
    { from: 'human', value: 'Bye' },
    { from: 'gpt', value: 'Goodbye.' },
  ];

  it('turns messages into turns, a leading system message overriding the system column', () => {
    const [example] = sharegptExamples([{ conversations: conversation, system: 'ignored' }], {
      messages: 'conversations',
      system: 'system',
    });
    expect(example).toEqual({
      system: 'Be brief.',
      turns: [
        { user: 'Hi', assistant: 'Hello.' },
        { user: 'Bye', assistant: 'Goodbye.' },
      ],
    });
    const [openai] = sharegptExamples(
      [
        {
          messages: [
            { role: 'user', content: 'Q' },
            { role: 'assistant', content: 'A' },
          ],
        },
      ],
      { messages: 'messages' },
      OPENAI_TAGS,
    );
    expect(openai).toEqual({ system: '', turns: [{ user: 'Q', assistant: 'A' }] });
  });

  it.each([
    [[{ from: 'human', value: 'Hi' }], 'an even number'],
    [
      [
        { from: 'gpt', value: 'Hi' },
        { from: 'human', value: 'x' },
      ],
      'message 0 "from" must be "human"',
    ],
    [
      [
        { from: 'human', value: 'Hi' },
        { from: 'observation', value: 'x' },
      ],
      'tool calls and observations are not supported',
    ],
    [
      [
        { from: 'human', value: 3 },
        { from: 'gpt', value: 'x' },
      ],
      'message 0 "value" must be a string',
    ],
  ])('refuses %j naming the record and the message', (messages, message) => {
    expect(() => sharegptExamples([{ conversations: messages }], {}, {}, 'chat.json')).toThrow(message);
    expect(() => sharegptExamples([{ conversations: messages }], {}, {}, 'chat.json')).toThrow(
      'chat.json record 0',
    );
  });

  it('loads sharegpt entries of dataset_info.json with columns and tags, and either format from a file path', async () => {
    writeFileSync(
      join(root, 'openai.json'),
      JSON.stringify([
        {
          messages: [
            { role: 'user', content: 'Q' },
            { role: 'assistant', content: 'A' },
          ],
        },
      ]),
    );
    writeFileSync(join(root, 'sharegpt.jsonl'), `${JSON.stringify({ conversations: conversation })}\n`);
    writeFileSync(
      join(root, 'dataset_info.json'),
      JSON.stringify({
        chat: { file_name: 'sharegpt.jsonl', formatting: 'sharegpt' },
        oai: {
          file_name: 'openai.json',
          formatting: 'sharegpt',
          columns: { messages: 'messages' },
          tags: { role_tag: 'role', content_tag: 'content', user_tag: 'user', assistant_tag: 'assistant' },
        },
        bad: { file_name: 'openai.json', formatting: 'parquet' },
      }),
    );
    const examples = await loadInstructionDataset('chat,oai', root);
    expect(examples.map((e) => e.turns.length)).toEqual([2, 1]);
    const byPath = await loadInstructionDataset(join(root, 'openai.json'));
    expect(byPath[0]!.turns).toEqual([{ user: 'Q', assistant: 'A' }]);
    await expect(loadInstructionDataset('bad', root)).rejects.toThrow('"alpaca" or "sharegpt"');
  });
});

/** A tokenizer over bytes that also knows the chat templates' special tokens, as the models' tokenizers do. */
class SpecialTokens implements Tokenizer {
  private readonly bytes = new ByteTokenizer();
  private readonly special = ['<|eot_id|>', '<|im_end|>', '<|start_header_id|>', '<|end_header_id|>'];
  readonly vocabSize = 259 + this.special.length;
  readonly padTokenId = 256;
  readonly bosTokenId = 257;
  readonly eosTokenId = 258;
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[] {
    const pattern = new RegExp(`(${this.special.map((s) => s.replace(/[|]/g, '\\|')).join('|')})`);
    return text
      .split(pattern)
      .flatMap((part) =>
        this.special.includes(part) ? [259 + this.special.indexOf(part)] : this.bytes.encode(part, options),
      );
  }
  decode(ids: readonly number[]): string {
    return ids.map((id) => (id >= 259 ? this.special[id - 259] : this.bytes.decode([id]))).join('');
  }
  tokenToId(token: string): number | undefined {
    const i = this.special.indexOf(token);
    return i >= 0 ? 259 + i : this.bytes.tokenToId?.(token);
  }
}

describe('chatTemplateJinja', () => {
  const turns = [
    { user: "What's 'x'?\nSay", assistant: 'A\\B "quoted".' },
    { user: 'And then?', assistant: 'Done.' },
  ];
  it.each(Object.keys(CHAT_TEMPLATES))(
    'the %s template as Jinja renders the same tokens as the built-in, with and without a system prompt',
    (name) => {
      const builtin = CHAT_TEMPLATES[name]!;
      const tokenizer = new SpecialTokens();
      const jinja = jinjaChatTemplate({
        source: chatTemplateJinja(builtin),
        bosToken: '<s>',
        eosToken: '</s>',
      });
      for (const system of ['', 'You are terse.'])
        expect(encodeTurns(jinja, tokenizer, turns, system)).toEqual(
          encodeTurns(builtin, tokenizer, turns, system),
        );
    },
  );
  it("a model's own template is kept as its source", () => {
    const source = "{% for m in messages %}{{ m['content'] }}{% endfor %}";
    expect(chatTemplateJinja(jinjaChatTemplate({ source }))).toBe(source);
  });
});
