import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  ByteTokenizer,
  encodeGenerationPrompt,
  encodeTurns,
  jinjaChatTemplate,
  MODEL_CHAT_TEMPLATE,
  modelChatTemplate,
} from '../src/index.js';

const root = mkdtempSync(join(tmpdir(), 'badam-jinja-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Meta-Llama-3-8B-Instruct's tokenizer_config.json chat_template, as published. */
const LLAMA3 =
  "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

/** ChatML as Qwen2 ships it: a default system message when the conversation has none. */
const CHATML =
  "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const tokenizer = new ByteTokenizer();
const text = (ids: number[]) => tokenizer.decode(ids);

describe("a model's own chat template (Jinja)", () => {
  it("splits each turn into prompt and response as the model's template renders them (Llama 3)", () => {
    const template = jinjaChatTemplate({
      source: LLAMA3,
      bosToken: '<|begin_of_text|>',
      eosToken: '<|eot_id|>',
    });
    expect(template.name).toBe(MODEL_CHAT_TEMPLATE);
    const pairs = encodeTurns(template, tokenizer, [
      { user: 'Hi', assistant: 'Hello' },
      { user: 'Sum 2 and 3', assistant: '5' },
    ]);
    expect(pairs.map((p) => [text(p.prompt), text(p.response)])).toEqual([
      [
        '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
        'Hello<|eot_id|>',
      ],
      [
        '<|start_header_id|>user<|end_header_id|>\n\nSum 2 and 3<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
        '5<|eot_id|>',
      ],
    ]);
  });

  it('renders the system message, or the default the template has, and the generation prompt (ChatML)', () => {
    const template = jinjaChatTemplate({ source: CHATML, eosToken: '<|im_end|>' });
    const [first] = encodeTurns(template, tokenizer, [{ user: 'Hi', assistant: 'Yo' }], 'Be brief.');
    expect(text(first!.prompt)).toBe(
      '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n',
    );
    expect(text(first!.response)).toBe('Yo<|im_end|>\n');
    const prompt = encodeGenerationPrompt(template, tokenizer, [{ user: 'Hi', assistant: 'Yo' }], 'Again');
    expect(text(prompt)).toBe(
      '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nYo<|im_end|>\n<|im_start|>user\nAgain<|im_end|>\n<|im_start|>assistant\n',
    );
  });

  it('a template that rewrites earlier turns, or does not parse, is an error saying to pass --template', () => {
    const reversed = jinjaChatTemplate({
      source: "{% for m in messages|reverse %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}",
    });
    expect(() =>
      encodeTurns(reversed, tokenizer, [
        { user: 'a', assistant: 'b' },
        { user: 'c', assistant: 'd' },
      ]),
    ).toThrow(/rewrites earlier turns .*pass --template/);
    expect(() => jinjaChatTemplate({ source: '{% for x in %}' })).toThrow(
      /pass --template with a built-in template/,
    );
  });

  it("reads a model folder's tokenizer_config.json: a string, or the default of named templates; none: undefined", async () => {
    const single = join(root, 'single');
    mkdirSync(single);
    writeFileSync(
      join(single, 'tokenizer_config.json'),
      JSON.stringify({
        chat_template: LLAMA3,
        bos_token: { content: '<|begin_of_text|>' },
        eos_token: '<|eot_id|>',
      }),
    );
    const fromFile = await modelChatTemplate(single);
    expect(fromFile?.jinja?.bosToken).toBe('<|begin_of_text|>');
    expect(text(encodeTurns(fromFile!, tokenizer, [{ user: 'x', assistant: 'y' }])[0]!.prompt)).toMatch(
      /^<\|begin_of_text\|><\|start_header_id\|>user/,
    );
    const named = join(root, 'named');
    mkdirSync(named);
    writeFileSync(
      join(named, 'tokenizer_config.json'),
      JSON.stringify({
        chat_template: [
          { name: 'tool_use', template: 'x' },
          { name: 'default', template: CHATML },
        ],
      }),
    );
    expect((await modelChatTemplate(named))?.jinja?.source).toBe(CHATML);
    const none = join(root, 'none');
    mkdirSync(none);
    writeFileSync(join(none, 'tokenizer_config.json'), '{}');
    expect(await modelChatTemplate(none)).toBeUndefined();
    expect(await modelChatTemplate(join(root, 'absent'))).toBeUndefined();
  });
});
