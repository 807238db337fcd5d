import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  alpacaExamples,
  ByteTokenizer,
  batchedDataSource,
  chatTemplate,
  encodeGenerationPrompt,
  encodePretraining,
  encodeSupervised,
  encodeTurns,
  IGNORE_LABEL,
  inferSeqlen,
  loadInstructionDataset,
  padBatch,
  splitValidation,
} from '../src/index.js';
import { HAS_SHARED_DATA, SHARED_DATA } from './fixtures/shared-data.js';

const tokenizer = new ByteTokenizer();
const text = (ids: number[]) => tokenizer.decode(ids);
const root = mkdtempSync(join(tmpdir(), 'badam-data-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('ByteTokenizer', () => {
  it('round-trips any text and recognises special tokens written in it', () => {
    const s = 'héllo 世界 </s> <s>x';
    const ids = tokenizer.encode(s);
    expect(ids).toContain(258);
    expect(ids).toContain(257);
    expect(tokenizer.decode(ids)).toBe(s);
    expect(tokenizer.decode(ids, { skipSpecialTokens: true })).toBe('héllo 世界  x');
    expect(tokenizer.encode('a', { addSpecialTokens: true })).toEqual([257, 97]);
  });
});

describe('chat templates (LLaMA-Factory v0.9.3)', () => {
  const turn = [{ user: 'Hi', assistant: 'Hello' }];
  it('alpaca: default system, instruction / response headers, EOS then two newlines', () => {
    const [pair] = encodeTurns(chatTemplate('alpaca'), tokenizer, turn);
    expect(text(pair!.prompt)).toBe(
      'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nHi\n\n### Response:\n',
    );
    expect(text(pair!.response)).toBe('Hello</s>\n\n');
  });

  it('default: Human / Assistant with EOS after each part', () => {
    const [pair] = encodeTurns(chatTemplate('default'), tokenizer, turn, 'S');
    expect(text(pair!.prompt)).toBe('System: S</s>\nHuman: Hi</s>\nAssistant:');
    expect(text(pair!.response)).toBe('Hello</s>\n');
  });

  it('llama2: the system prompt goes inside the first [INST], BOS on every user turn', () => {
    const pairs = encodeTurns(
      chatTemplate('llama2'),
      tokenizer,
      [...turn, { user: 'More', assistant: 'Sure' }],
      'S',
    );
    expect(text(pairs[0]!.prompt)).toBe('<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nHi [/INST]');
    expect(text(pairs[1]!.prompt)).toBe('<s>[INST] More [/INST]');
    expect(text(pairs[1]!.response)).toBe('Sure</s>');
  });

  it('llama3 / qwen need their own special tokens: a clear error with the byte tokenizer', () => {
    expect(() => encodeTurns(chatTemplate('llama3'), tokenizer, turn)).toThrow(
      /stop word <\|eot_id\|> is a token of this tokenizer/,
    );
    expect(() => chatTemplate('vicuna')).toThrow(
      /template must be one of default, alpaca, llama2, llama3, qwen, got "vicuna"/,
    );
  });

  it('generation prompt: history, then the new user turn and the assistant opening', () => {
    const ids = encodeGenerationPrompt(chatTemplate('default'), tokenizer, turn, 'And?');
    expect(text(ids)).toBe('Human: Hi</s>\nAssistant:Hello</s>\nHuman: And?</s>\nAssistant:');
  });
});

describe('supervised examples', () => {
  it('inferSeqlen splits the budget as LLaMA-Factory', () => {
    expect(inferSeqlen(100, 10, 64)).toEqual([54, 10]); // short target kept whole
    expect(inferSeqlen(10, 100, 64)).toEqual([10, 54]); // short source kept whole
    expect(inferSeqlen(100, 60, 64)).toEqual([40, 24]); // both cut in proportion: floor(64 * 60/160)
  });

  it('masks the prompt with -100, keeps history responses trained, truncates to cutoff_len', () => {
    const examples = alpacaExamples([
      { instruction: 'Add', input: '2 and 3', output: '5', history: [['Hi', 'Hey']] },
      { instruction: 'x'.repeat(300), input: '', output: 'y'.repeat(300) },
    ]);
    expect(examples[0]!.turns).toEqual([
      { user: 'Hi', assistant: 'Hey' },
      { user: 'Add\n2 and 3', assistant: '5' },
    ]);
    const { examples: encoded, dropped } = encodeSupervised(examples, tokenizer, chatTemplate('alpaca'), {
      cutoffLen: 512,
    });
    expect(dropped).toBe(0);
    const first = encoded[0]!;
    const trained = first.labels.filter((l) => l !== IGNORE_LABEL);
    expect(tokenizer.decode(trained)).toBe('Hey</s>\n\n5</s>\n\n');
    expect(first.inputIds.length).toBe(first.labels.length);
    // The long example is cut to cutoff_len, source and target in proportion.
    const [pair] = encodeTurns(chatTemplate('alpaca'), tokenizer, examples[1]!.turns);
    const [source, target] = inferSeqlen(pair!.prompt.length, pair!.response.length, 128);
    const cut = encodeSupervised([examples[1]!], tokenizer, chatTemplate('alpaca'), { cutoffLen: 128 })
      .examples[0]!;
    expect(cut.inputIds).toHaveLength(128);
    expect(cut.labels.filter((l) => l !== IGNORE_LABEL)).toHaveLength(target);
    expect(cut.labels.slice(0, source).every((l) => l === IGNORE_LABEL)).toBe(true);
  });

  it('pretraining blocks: text + EOS, concatenated and cut into cutoff_len blocks, all trained on', () => {
    const blocks = encodePretraining(
      alpacaExamples([
        { instruction: 'abcdefgh', output: 'ij' },
        { instruction: 'kl', output: 'mn' },
      ]),
      tokenizer,
      chatTemplate('default'),
      4,
    );
    // "abcdefgh\nij</s>kl\nmn</s>" is 18 tokens: four blocks of 4, the remainder dropped.
    expect(blocks.map((b) => tokenizer.decode(b.inputIds))).toEqual(['abcd', 'efgh', '\nij</s>', 'kl\nm']);
    expect(blocks.every((b) => b.labels === b.inputIds)).toBe(true);
  });

  it('validation split: seeded, fraction or count, as train_test_split', () => {
    const items = Array.from({ length: 20 }, (_, i) => i);
    const a = splitValidation(items, 0.1, 42);
    expect(a.validation).toHaveLength(2);
    expect(a.train).toHaveLength(18);
    expect(splitValidation(items, 0.1, 42)).toEqual(a);
    expect(splitValidation(items, 5, 1).validation).toHaveLength(5);
    expect([...a.train, ...a.validation].sort((x, y) => x - y)).toEqual(items);
    expect(() => splitValidation(items, 20)).toThrow(/val_size must be fewer than the 20 examples/);
  });

  it('pads right with the pad id, labels -100 and mask 0; length grouping puts the longest batch first', () => {
    const batch = padBatch(
      [
        { inputIds: [5, 6, 7], labels: [-100, 6, 7] },
        { inputIds: [1], labels: [1] },
      ],
      256,
      8,
    );
    expect(batch.inputIds[1]).toEqual([1, 256, 256, 256, 256, 256, 256, 256]);
    expect(batch.labels[1]).toEqual([1, -100, -100, -100, -100, -100, -100, -100]);
    expect(batch.attentionMask[0]).toEqual([1, 1, 1, 0, 0, 0, 0, 0]);
    const examples = Array.from({ length: 40 }, (_, i) => ({
      inputIds: new Array(1 + ((i * 7) % 23)).fill(1),
      labels: new Array(1 + ((i * 7) % 23)).fill(1),
    }));
    const source = batchedDataSource(examples, {
      batchSize: 4,
      padTokenId: 0,
      groupByLength: true,
      shuffleSeed: 3,
    });
    const batches = [...(source.batches(0) as Iterable<ReturnType<typeof padBatch>>)];
    expect(batches).toHaveLength(10);
    expect(batches[0]!.inputIds[0]!.length).toBe(23);
    const padding = batches.reduce((n, b) => n + b.attentionMask.flat().filter((m) => m === 0).length, 0);
    const plain = [
      ...(batchedDataSource(examples, { batchSize: 4, padTokenId: 0, shuffleSeed: 3 }).batches(0) as Iterable<
        ReturnType<typeof padBatch>
      >),
    ];
    expect(padding).toBeLessThan(
      plain.reduce((n, b) => n + b.attentionMask.flat().filter((m) => m === 0).length, 0),
    );
    expect([...(source.batches(1) as Iterable<unknown>)]).not.toEqual(batches);
  });
});

describe('loading datasets', () => {
  it('JSONL files and dataset_info.json names with column mappings; bad records are errors naming them', async () => {
    const dir = join(root, 'data');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'mine.jsonl'), '{"q": "Say hi", "a": "hi"}\n{"q": "Say yo", "a": "yo"}\n');
    writeFileSync(
      join(dir, 'dataset_info.json'),
      JSON.stringify({ mine: { file_name: 'mine.jsonl', columns: { prompt: 'q', response: 'a' } } }),
    );
    const examples = await loadInstructionDataset('mine', dir);
    expect(examples[1]).toEqual({ turns: [{ user: 'Say yo', assistant: 'yo' }], system: '' });
    // --max_samples keeps the first N of each dataset, as LLaMA-Factory does, not of their concatenation.
    const limited = await loadInstructionDataset('mine,mine', dir, { maxSamples: 1 });
    expect(limited.map((e) => e.turns[0]!.user)).toEqual(['Say hi', 'Say hi']);
    await expect(loadInstructionDataset('theirs', dir)).rejects.toThrow(
      /dataset must be a name defined in .*dataset_info.json: mine/,
    );
    writeFileSync(join(dir, 'bad.json'), '[{"instruction": 1, "output": "x"}]');
    await expect(loadInstructionDataset(join(dir, 'bad.json'))).rejects.toThrow(
      /bad.json record 0 field "instruction" must be a string, got 1/,
    );
  });

  it('a dataset file that does not exist says so, with or without a dataset_info.json to look in', async () => {
    await expect(loadInstructionDataset(join(root, 'missing.json'), join(root, 'nowhere'))).rejects.toThrow(
      /missing\.json does not exist, and there is no .*nowhere\/dataset_info\.json \(--dataset_dir\)/,
    );
    await expect(loadInstructionDataset('missing.json', join(root, 'data'))).rejects.toThrow(
      /missing\.json is not a file either: it does not exist/,
    );
  });

  it('an empty dataset file is an error naming it, not an empty run', async () => {
    writeFileSync(join(root, 'empty.jsonl'), '\n');
    await expect(loadInstructionDataset(join(root, 'empty.jsonl'))).rejects.toThrow(
      /dataset file must be a file with at least one example, got ".*empty\.jsonl" \(it has none\)/,
    );
  });

  it.skipIf(!HAS_SHARED_DATA)(
    'reads the shared alpaca_en_demo.json (999 examples) and tokenizes it',
    async () => {
      const examples = await loadInstructionDataset(join(SHARED_DATA, 'alpaca', 'alpaca_en_demo.json'));
      expect(examples).toHaveLength(999);
      const { examples: encoded, dropped } = encodeSupervised(examples, tokenizer, chatTemplate('alpaca'), {
        cutoffLen: 512,
      });
      expect(encoded.length + dropped).toBe(999);
      expect(Math.max(...encoded.map((e) => e.inputIds.length))).toBeLessThanOrEqual(512);
      const { train, validation } = splitValidation(encoded, 0.1);
      expect(validation).toHaveLength(Math.ceil(0.1 * encoded.length));
      expect(train.length + validation.length).toBe(encoded.length);
    },
  );
});
