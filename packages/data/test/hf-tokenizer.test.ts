import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  chatTemplate,
  encodeSupervised,
  encodeTurns,
  HfTokenizer,
  IGNORE_LABEL,
  templateStopIds,
} from '../src/index.js';

const dir = (name: string) => fileURLToPath(new URL(`./fixtures/tokenizers/${name}`, import.meta.url));
interface Case {
  text: string;
  ids: number[];
  ids_nospecial: number[];
  dec: string;
  dec_skip: string;
}
const REFERENCE = JSON.parse(
  readFileSync(new URL('./fixtures/tokenizers/rust-reference.json', import.meta.url), 'utf8'),
) as Record<string, Case[]>;

describe("HfTokenizer reproduces Hugging Face's Rust tokenizers exactly", () => {
  for (const name of ['llama3', 'qwen2', 'llama2', 'mistral']) {
    it(`${name}: ids with and without special tokens, and decodings, for ${REFERENCE[name]!.length} texts`, async () => {
      const tokenizer = await HfTokenizer.fromDirectory(dir(name));
      for (const c of REFERENCE[name]!) {
        expect(tokenizer.encode(c.text, { addSpecialTokens: true }), c.text).toEqual(c.ids);
        expect(tokenizer.encode(c.text), c.text).toEqual(c.ids_nospecial);
        expect(tokenizer.decode(c.ids), c.text).toBe(c.dec);
        expect(tokenizer.decode(c.ids, { skipSpecialTokens: true }), c.text).toBe(c.dec_skip);
      }
    });
  }
});

describe('templates with real special tokens', () => {
  it('llama3: BOS once, header tokens and <|eot_id|> as single tokens, prompt masked', async () => {
    const tokenizer = await HfTokenizer.fromDirectory(dir('llama3'));
    const template = chatTemplate('llama3');
    const [pair] = encodeTurns(template, tokenizer, [{ user: 'Hi', assistant: 'Hello' }], 'Be brief');
    const eot = tokenizer.tokenToId('<|eot_id|>')!;
    expect(pair!.prompt[0]).toBe(tokenizer.tokenToId('<|begin_of_text|>'));
    expect(tokenizer.decode(pair!.prompt)).toBe(
      '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
    );
    expect(pair!.response.at(-1)).toBe(eot);
    expect(templateStopIds(template, tokenizer)).toEqual([eot]);
    const { examples } = encodeSupervised(
      [{ turns: [{ user: 'Hi', assistant: 'Hello' }], system: '' }],
      tokenizer,
      template,
    );
    expect(tokenizer.decode(examples[0]!.labels.filter((l) => l !== IGNORE_LABEL))).toBe('Hello<|eot_id|>');
  });

  it('a directory without tokenizer.json is an error that says what is needed', async () => {
    await expect(HfTokenizer.fromDirectory(dir('nope'))).rejects.toThrow(
      /tokenizer must be a directory with tokenizer.json, or vocab.json \+ merges.txt/,
    );
  });
});

describe('ByteTokenizer as a Hugging Face tokenizer.json', () => {
  it('gives the same ids and text through @huggingface/tokenizers', async () => {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { ByteTokenizer } = await import('../src/index.js');
    const bytes = new ByteTokenizer();
    const out = mkdtempSync(join(tmpdir(), 'byte-tok-'));
    const { tokenizer, config } = bytes.toHuggingFace();
    writeFileSync(join(out, 'tokenizer.json'), JSON.stringify(tokenizer));
    writeFileSync(join(out, 'tokenizer_config.json'), JSON.stringify(config));
    const hf = await HfTokenizer.fromDirectory(out);
    expect([hf.bosTokenId, hf.eosTokenId, hf.padTokenId, hf.vocabSize]).toEqual([257, 258, 256, 259]);
    for (const text of ['Hello world', ' two  spaces\n', 'héllo 世界 🙂', 'Sort: 3 1 2</s>', '<s>x<pad>']) {
      expect(hf.encode(text), text).toEqual(bytes.encode(text));
      expect(hf.decode(bytes.encode(text)), text).toBe(bytes.decode(bytes.encode(text)));
    }
  });
});
