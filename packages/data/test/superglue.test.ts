import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  accuracy,
  ByteTokenizer,
  encodeSentencePair,
  f1Score,
  HfTokenizer,
  loadSuperGlue,
  macroF1,
  multircScores,
  pairFormat,
  recordScores,
  superGlueExamples,
  type Tokenizer,
  tokenF1,
} from '../src/index.js';
import { SHARED_DATA } from './fixtures/shared-data.js';

const superglue = join(SHARED_DATA, 'superglue');

describe.skipIf(!existsSync(join(superglue, 'cb', 'train.jsonl')))(
  'SuperGLUE loaders on ../shared/data/superglue',
  () => {
    it('BoolQ: label from `answer`, question first', async () => {
      const train = await loadSuperGlue(superglue, 'boolq', 'train');
      expect(train).toHaveLength(1000);
      expect(new Set(train.map((e) => e.label))).toEqual(new Set([0, 1]));
      expect(train[0]!.rows[0]![0]).toBe('do iran and afghanistan speak the same language');
      expect(train[0]!.label).toBe(1);
    });

    it('CB: three classes; RTE: two', async () => {
      const cb = await loadSuperGlue(superglue, 'cb', 'train');
      expect(cb).toHaveLength(250);
      expect(new Set(cb.map((e) => e.label))).toEqual(new Set([0, 1, 2]));
      expect(cb[0]!.rows[0]![1]).toBe('the language was peeled down');
      const rte = await loadSuperGlue(superglue, 'rte', 'val');
      expect(rte).toHaveLength(277);
      expect(new Set(rte.map((e) => e.label))).toEqual(new Set([0, 1]));
    });

    it('COPA: one row per choice, the question spelled out', async () => {
      const copa = await loadSuperGlue(superglue, 'copa', 'train');
      expect(copa).toHaveLength(400);
      expect(copa[0]!.rows).toEqual([
        ['My body cast a shadow over the grass.', 'What was the cause? The sun was rising.'],
        ['My body cast a shadow over the grass.', 'What was the cause? The grass was cut.'],
      ]);
      expect(copa[0]!.label).toBe(0);
    });

    it('a missing file names the path', async () => {
      await expect(loadSuperGlue(superglue, 'wic', 'train')).rejects.toThrow(
        /wic train data.*wic\/train\.jsonl/,
      );
    });
  },
);

describe('SuperGLUE formats without local files: WiC, WSC, MultiRC, ReCoRD', () => {
  it('WiC and WSC become sentence pairs', () => {
    const [wic] = superGlueExamples('wic', [
      {
        word: 'bank',
        sentence1: 'He sat on the bank.',
        sentence2: 'The bank was closed.',
        label: false,
        idx: 3,
      },
    ]);
    expect(wic).toEqual({ id: '3', rows: [['bank: He sat on the bank.', 'The bank was closed.']], label: 0 });
    const [wsc] = superGlueExamples('wsc', [
      { text: 'Mark told Pete he was late.', target: { span1_text: 'Pete', span2_text: 'he' }, label: true },
    ]);
    expect(wsc!.rows[0]![1]).toBe('Does "he" refer to "Pete"?');
    expect(wsc!.label).toBe(1);
  });

  it('MultiRC flattens passage / questions / answers, grouped by question', () => {
    const rows = superGlueExamples('multirc', [
      {
        idx: 0,
        passage: {
          text: 'Sam bought apples.',
          questions: [
            {
              idx: 0,
              question: 'What did Sam buy?',
              answers: [
                { idx: 0, text: 'apples', label: 1 },
                { idx: 1, text: 'pears', label: 0 },
              ],
            },
            { idx: 1, question: 'Who bought?', answers: [{ idx: 2, text: 'Sam', label: 1 }] },
          ],
        },
      },
    ]);
    expect(rows.map((r) => [r.rows[0]![1], r.label, r.group])).toEqual([
      ['What did Sam buy? apples', 1, '0-0'],
      ['What did Sam buy? pears', 0, '0-0'],
      ['Who bought? Sam', 1, '0-1'],
    ]);
  });

  it('ReCoRD fills @placeholder with each entity; the label is the gold one', () => {
    const text = 'Paris is in France. Berlin is in Germany.';
    const [q] = superGlueExamples('record', [
      {
        idx: 7,
        passage: {
          text,
          entities: [
            { start: 0, end: 4 },
            { start: 20, end: 25 },
            { start: 12, end: 17 },
          ],
        },
        qas: [
          {
            idx: 0,
            query: '@placeholder is the capital of Germany.',
            answers: [{ start: 20, end: 25, text: 'Berlin' }],
          },
        ],
      },
    ]);
    expect(q!.candidates).toEqual(['Paris', 'Berlin', 'France']);
    expect(q!.rows[1]![1]).toBe('Berlin is the capital of Germany.');
    expect(q!.label).toBe(1);
  });

  it('a malformed record is an error that names it', () => {
    expect(() =>
      superGlueExamples('cb', [{ premise: 'a', hypothesis: 'b', label: 7 }], 'cb/train.jsonl'),
    ).toThrow('cb/train.jsonl record 0 field "label"');
    expect(() =>
      superGlueExamples('copa', [{ premise: 'a', choice1: 'b', choice2: 'c', question: 'why', label: 0 }]),
    ).toThrow('"cause" or "effect"');
  });
});

describe('SuperGLUE metrics', () => {
  it('accuracy, binary F1 and macro F1 (scikit-learn values)', () => {
    const labels = [0, 1, 2, 0, 1, 2];
    const predictions = [0, 2, 1, 0, 0, 1];
    expect(accuracy(predictions, labels)).toBeCloseTo(1 / 3);
    // sklearn.metrics.f1_score(labels, predictions, average='macro') = 0.26666...
    expect(macroF1(predictions, labels, 3)).toBeCloseTo(0.26666666666666666);
    expect(f1Score([1, 1, 0, 0], [1, 0, 1, 0])).toBeCloseTo(0.5);
    expect(() => accuracy([1], [1, 0])).toThrow('one per label');
  });

  it('MultiRC F1a over answers and EM over questions', () => {
    const scores = multircScores([1, 0, 1, 1], [1, 0, 0, 1], ['q1', 'q1', 'q2', 'q2']);
    expect(scores.exact_match).toBe(0.5);
    expect(scores.f1a).toBeCloseTo(0.8);
  });

  it('ReCoRD token F1 and EM with SQuAD normalisation', () => {
    expect(tokenF1('The Eiffel Tower', 'eiffel tower!')).toBe(1);
    expect(tokenF1('Berlin Wall', 'Berlin')).toBeCloseTo(2 / 3);
    expect(recordScores(['the Berlin', 'Paris'], [['Berlin'], ['Lyon', 'Nice']])).toEqual({
      f1: 0.5,
      exact_match: 0.5,
    });
  });
});

describe('sentence pairs for encoders', () => {
  const byte = new ByteTokenizer();
  it('RoBERTa: <s> A </s></s> B </s>, one segment; longest_first truncation', () => {
    const format = pairFormat(byte, 'roberta');
    const pair = encodeSentencePair(byte, format, 'abc', 'de', { maxLength: 16 });
    expect(pair.inputIds).toEqual([
      byte.bosTokenId,
      97,
      98,
      99,
      byte.eosTokenId,
      byte.eosTokenId,
      100,
      101,
      byte.eosTokenId,
    ]);
    expect(pair.tokenTypeIds.every((t) => t === 0)).toBe(true);
    const cut = encodeSentencePair(byte, format, 'abcdefgh', 'xyz', { maxLength: 10 });
    expect(byte.decode(cut.inputIds.filter((id) => id < 256))).toBe('abcxyz'); // 6 of 11 tokens fit: 3 from each side
    expect(
      encodeSentencePair(byte, format, 'abcdefgh', 'xyz', { maxLength: 10, truncation: 'only_first' })
        .inputIds,
    ).toHaveLength(10);
    expect(() => encodeSentencePair(byte, format, 'a', 'b', { maxLength: 5 })).toThrow('an integer >= 6');
  });

  it('BERT: [CLS] A [SEP] B [SEP] with segment ids 0 and 1', () => {
    const vocab = new Map([
      ['[CLS]', 101],
      ['[SEP]', 102],
    ]);
    const words: Tokenizer = {
      encode: (text) => text.split(' ').map((w) => w.length),
      decode: () => '',
      tokenToId: (t) => vocab.get(t),
      vocabSize: 200,
      bosTokenId: undefined,
      eosTokenId: undefined,
      padTokenId: 0,
    };
    const pair = encodeSentencePair(words, pairFormat(words, 'bert'), 'a bb', 'ccc', { maxLength: 8 });
    expect(pair).toEqual({ inputIds: [101, 1, 2, 102, 3, 102], tokenTypeIds: [0, 0, 0, 0, 1, 1] });
  });
});

describe('GPT-2 / RoBERTa vocab.json + merges.txt', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bpe-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('gives the same ids as the equivalent tokenizer.json, with RoBERTa special tokens', async () => {
    const fixture = new URL('./fixtures/tokenizers/qwen2/', import.meta.url);
    const json = JSON.parse(readFileSync(new URL('tokenizer.json', fixture), 'utf8')) as {
      model: { vocab: Record<string, number>; merges: Array<string | string[]> };
    };
    const n = Object.keys(json.model.vocab).length;
    const vocab = {
      ...json.model.vocab,
      '<s>': n,
      '</s>': n + 1,
      '<pad>': n + 2,
      '<unk>': n + 3,
      '<mask>': n + 4,
    };
    const bpe = join(dir, 'roberta-style');
    await mkdir(bpe, { recursive: true });
    await writeFile(join(bpe, 'vocab.json'), JSON.stringify(vocab));
    await writeFile(
      join(bpe, 'merges.txt'),
      `#version: 0.2\n${json.model.merges.map((m) => (Array.isArray(m) ? m.join(' ') : m)).join('\n')}\n`,
    );
    const fromMerges = await HfTokenizer.fromDirectory(bpe);
    const fromJson = await HfTokenizer.fromDirectory(new URL('.', fixture).pathname);
    for (const text of ['the cat sat on the mat', 'Hello world, how are you?']) {
      expect(fromMerges.encode(text)).toEqual(fromJson.encode(text));
      expect(fromMerges.decode(fromMerges.encode(text))).toBe(text);
    }
    expect([fromMerges.bosTokenId, fromMerges.eosTokenId, fromMerges.padTokenId]).toEqual([n, n + 1, n + 2]);
    expect(fromMerges.encode('a</s>').at(-1)).toBe(n + 1);
    await writeFile(join(bpe, 'merges.txt'), 'a b c\n');
    await expect(HfTokenizer.fromDirectory(bpe)).rejects.toThrow('merges.txt line 1');
  });
});

describe('SuperGLUE labels: never silently -1 in train or val', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'badam-superglue-labels-'));
    await mkdir(join(dir, 'cb'), { recursive: true });
    const row = (label?: string) =>
      JSON.stringify({ premise: 'p', hypothesis: 'h', ...(label ? { label } : {}), idx: 0 });
    // Line 3 (after a blank line) has no label.
    await writeFile(join(dir, 'cb', 'train.jsonl'), `${row('neutral')}\n\n${row()}\n`);
    await writeFile(join(dir, 'cb', 'val.jsonl'), `${row('entailment')}\n${row('maybe')}\n`);
    await writeFile(join(dir, 'cb', 'test.jsonl'), `${row()}\n${row()}\n`);
    await mkdir(join(dir, 'rte'), { recursive: true });
    await writeFile(join(dir, 'rte', 'train.jsonl'), '\n');
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('an unlabelled train row is an error naming file and line', async () => {
    await expect(loadSuperGlue(dir, 'cb', 'train')).rejects.toThrow(
      /cb\/train\.jsonl line 3 must be a labelled example \(entailment \/ contradiction \/ neutral\), got "no label" \(train and val files need a label/,
    );
  });
  it('an out-of-range label in val names file and line', async () => {
    await expect(loadSuperGlue(dir, 'cb', 'val')).rejects.toThrow(/cb\/val\.jsonl line 2 field "label"/);
  });
  it('test files, which have no labels, load for prediction', async () => {
    const test = await loadSuperGlue(dir, 'cb', 'test');
    expect(test.map((e) => e.label)).toEqual([-1, -1]);
  });
  it('an empty train file is an error saying so', async () => {
    await expect(loadSuperGlue(dir, 'rte', 'train')).rejects.toThrow(/rte\/train\.jsonl.*it has none/);
  });
});
