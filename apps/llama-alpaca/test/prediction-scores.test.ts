import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { predictionScores, sentenceBleu4, similarityTokens } from '../src/prediction-scores.js';

// BLEU-4 as NLTK's sentence_bleu with SmoothingFunction().method3 computes it (LLaMA-Factory's
// predict_bleu-4, over characters); the expected values are worked out by hand from its definition.

describe('prediction scores', () => {
  it('BLEU-4: modified precisions, method3 smoothing of zero precisions, brevity penalty', () => {
    // p1 3/4, p2 2/3, p3 1/2, p4 0/1 -> 1/2 (the first zero: 1 / (2^1 * 1)); same length: no penalty.
    expect(sentenceBleu4([...'abcd'], [...'abce'])).toBeCloseTo((0.75 * (2 / 3) * 0.5 * 0.5) ** 0.25, 12);
    expect(sentenceBleu4([...'hello'], [...'hello'])).toBe(1);
    expect(sentenceBleu4([...'abc'], [...'xyz'])).toBe(0);
    // Shorter than the reference: exp(1 - r / c) = exp(1 - 4 / 2); p1 1, p2 1, p3 0/1 -> 1/2, p4 0/1 -> 1/4.
    expect(sentenceBleu4([...'abcd'], [...'ab'])).toBeCloseTo(
      Math.exp(1 - 2) * (1 * 1 * 0.5 * 0.25) ** 0.25,
      12,
    );
  });

  it('ROUGE over words and punctuation, averaged and scaled to 0-100 as LLaMA-Factory reports them', () => {
    expect(similarityTokens('Hello, world! 你好')).toEqual(['Hello', ',', 'world', '!', '你', '好']);
    const same = predictionScores([{ predict: 'the cat sat', label: 'the cat sat' }]);
    expect(same['bleu-4']).toBe(100);
    expect(same['rouge-1']).toBeCloseTo(100, 3);
    expect(same['rouge-l']).toBeCloseTo(100, 3);
    const half = predictionScores([
      { predict: 'the cat', label: 'the dog' },
      { predict: '', label: 'anything' },
    ]);
    // rouge-1 of the first pair: 1 of 2 unigrams each way, F1 1/2; the empty prediction scores 0.
    expect(half['rouge-1']).toBeCloseTo(25, 3);
    expect(half['rouge-2']).toBe(0);
  });

  const python = '/usr/bin/python3';
  const hasNltk =
    existsSync(python) && spawnSync(python, ['-c', 'import nltk'], { encoding: 'utf8' }).status === 0;

  it.skipIf(!hasNltk)("BLEU-4 equals NLTK's own (Debian's python3-nltk), pair by pair", () => {
    const pairs = [
      ['The quick brown fox jumps.', 'The quick brown fox jumped over.'],
      ['abc', 'abd'],
      ['Reverse: dcba', 'dcba'],
      ['hello world', 'help world!'],
      ['a', 'ab'],
      ['x', 'y'],
      ['数字是四十二', '数字是42'],
    ];
    const script = [
      'import json, sys',
      'from nltk.translate.bleu_score import sentence_bleu, SmoothingFunction',
      'pairs = json.loads(sys.argv[1])',
      'print(json.dumps([sentence_bleu([list(r)], list(h), smoothing_function=SmoothingFunction().method3) for r, h in pairs]))',
    ].join('\n');
    const result = spawnSync(python, ['-c', script, JSON.stringify(pairs)], { encoding: 'utf8' });
    expect(result.status, result.stderr).toBe(0);
    const nltk = JSON.parse(result.stdout) as number[];
    pairs.forEach(([reference, hypothesis], i) =>
      expect(sentenceBleu4([...reference!], [...hypothesis!])).toBeCloseTo(nltk[i]!, 12),
    );
  });
});
