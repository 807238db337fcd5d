/** n-gram counts of a token list. */
function ngrams(tokens: readonly string[], n: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i + n <= tokens.length; i++) {
    const key = tokens.slice(i, i + n).join('\u0000');
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

/** Occurrences of `hypothesis`'s n-grams that `reference` has too (each counted at most as often as there). */
function overlap(hypothesis: Map<string, number>, reference: Map<string, number>): number {
  let matched = 0;
  for (const [key, count] of hypothesis) matched += Math.min(count, reference.get(key) ?? 0);
  return matched;
}

/**
 * Sentence BLEU-4 of `hypothesis` against one `reference`, as NLTK's `sentence_bleu` computes it with
 * `SmoothingFunction().method3` (the NIST geometric smoothing: the k-th zero precision becomes
 * 1 / (2^k * its count)), uniform weights and the brevity penalty; 0 when no unigram matches.
 */
export function sentenceBleu4(reference: readonly string[], hypothesis: readonly string[]): number {
  const precisions: Array<[number, number]> = [1, 2, 3, 4].map((n) => {
    const hyp = ngrams(hypothesis, n);
    return [overlap(hyp, ngrams(reference, n)), Math.max(1, hypothesis.length - n + 1)];
  });
  if (precisions[0]![0] === 0) return 0;
  let zeros = 1;
  const logSum = precisions.reduce((sum, [matched, total]) => {
    const p = matched > 0 ? matched / total : 1 / (2 ** zeros++ * total);
    return sum + 0.25 * Math.log(p);
  }, 0);
  const c = hypothesis.length;
  const r = reference.length;
  const brevity = c > r ? 1 : c === 0 ? 0 : Math.exp(1 - r / c);
  return brevity * Math.exp(logSum);
}

/** ROUGE-N F1 of two token lists (rouge's formula, its 1e-8 in the denominator included). */
function rougeN(reference: readonly string[], hypothesis: readonly string[], n: number): number {
  const hyp = ngrams(hypothesis, n);
  const ref = ngrams(reference, n);
  const matched = overlap(hyp, ref);
  const p = matched / Math.max(1, Math.max(0, hypothesis.length - n + 1));
  const r = matched / Math.max(1, Math.max(0, reference.length - n + 1));
  return (2 * p * r) / (p + r + 1e-8);
}

/** ROUGE-L F1: the longest common subsequence's precision and recall. */
function rougeL(reference: readonly string[], hypothesis: readonly string[]): number {
  let previous = new Array<number>(hypothesis.length + 1).fill(0);
  for (const token of reference) {
    const row = [0];
    for (let j = 1; j <= hypothesis.length; j++)
      row[j] = token === hypothesis[j - 1] ? previous[j - 1]! + 1 : Math.max(previous[j]!, row[j - 1]!);
    previous = row;
  }
  const lcs = previous[hypothesis.length]!;
  const p = lcs / Math.max(1, hypothesis.length);
  const r = lcs / Math.max(1, reference.length);
  return (2 * p * r) / (p + r + 1e-8);
}

/** Words and punctuation (whitespace dropped), each CJK character a token of its own. */
export function similarityTokens(text: string): string[] {
  return (
    text.match(/[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}]|[\p{L}\p{N}_]+|[^\s\p{L}\p{N}_]/gu) ??
    []
  );
}

/**
 * The similarity scores LLaMA-Factory's `predict_with_generate` reports, averaged over the predictions and
 * scaled to 0-100: `bleu-4` (NLTK's sentence BLEU with method3 smoothing over characters, as LLaMA-Factory
 * computes it) and `rouge-1`, `rouge-2`, `rouge-l` F1 over words and punctuation (LLaMA-Factory segments
 * with jieba: the same tokens for English, CJK text is split per character here).
 */
export function predictionScores(
  pairs: ReadonlyArray<{ readonly predict: string; readonly label: string }>,
): Record<'bleu-4' | 'rouge-1' | 'rouge-2' | 'rouge-l', number> {
  const sums = { 'bleu-4': 0, 'rouge-1': 0, 'rouge-2': 0, 'rouge-l': 0 };
  for (const { predict, label } of pairs) {
    sums['bleu-4'] += sentenceBleu4([...label], [...predict]) * 100;
    const hyp = similarityTokens(predict);
    const ref = similarityTokens(label);
    if (hyp.length === 0 || ref.length === 0) continue;
    sums['rouge-1'] += rougeN(ref, hyp, 1) * 100;
    sums['rouge-2'] += rougeN(ref, hyp, 2) * 100;
    sums['rouge-l'] += rougeL(ref, hyp) * 100;
  }
  const n = Math.max(1, pairs.length);
  const mean = (x: number) => Math.round((x / n) * 1e4) / 1e4;
  return {
    'bleu-4': mean(sums['bleu-4']),
    'rouge-1': mean(sums['rouge-1']),
    'rouge-2': mean(sums['rouge-2']),
    'rouge-l': mean(sums['rouge-l']),
  };
}
