import { BadamOptionError } from '@badam/core';

/** Fraction of predictions equal to their label. */
export function accuracy(predictions: readonly number[], labels: readonly number[]): number {
  sameLength(predictions, labels);
  if (labels.length === 0) return 0;
  return predictions.filter((p, i) => p === labels[i]).length / labels.length;
}

/** F1 of class `positive` (binary F1; 0 when it is never predicted nor present). */
export function f1Score(predictions: readonly number[], labels: readonly number[], positive = 1): number {
  sameLength(predictions, labels);
  let tp = 0;
  let fp = 0;
  let fn = 0;
  predictions.forEach((p, i) => {
    if (p === positive && labels[i] === positive) tp += 1;
    else if (p === positive) fp += 1;
    else if (labels[i] === positive) fn += 1;
  });
  return tp === 0 ? 0 : (2 * tp) / (2 * tp + fp + fn);
}

/** Unweighted mean of the per-class F1 over `classes` classes (CB's macro-F1, as scikit-learn's `average='macro'`). */
export function macroF1(predictions: readonly number[], labels: readonly number[], classes: number): number {
  let sum = 0;
  for (let c = 0; c < classes; c++) sum += f1Score(predictions, labels, c);
  return sum / classes;
}

/**
 * MultiRC as SuperGLUE scores it: F1a, the binary F1 over all answer options, and EM, the fraction of
 * questions whose every answer option is labelled right.
 */
export function multircScores(
  predictions: readonly number[],
  labels: readonly number[],
  groups: readonly string[],
): { f1a: number; exact_match: number } {
  sameLength(predictions, labels);
  sameLength(predictions, groups);
  const perQuestion = new Map<string, boolean>();
  for (const [i, p] of predictions.entries()) {
    perQuestion.set(groups[i]!, (perQuestion.get(groups[i]!) ?? true) && p === labels[i]);
  }
  const exact = [...perQuestion.values()].filter(Boolean).length / Math.max(perQuestion.size, 1);
  return { f1a: f1Score(predictions, labels, 1), exact_match: exact };
}

/** SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces. */
export function normalizeAnswer(text: string): string {
  return text
    .toLowerCase()
    .replace(/[!"#$%&'()*+,\-./:;<=>?@[\\\]^_`{|}~]/g, '')
    .replace(/\b(a|an|the)\b/g, ' ')
    .split(/\s+/)
    .filter(Boolean)
    .join(' ');
}

/** Token-level F1 of one answer against one gold answer (SQuAD / ReCoRD). */
export function tokenF1(prediction: string, gold: string): number {
  const p = normalizeAnswer(prediction).split(' ').filter(Boolean);
  const g = normalizeAnswer(gold).split(' ').filter(Boolean);
  const counts = new Map<string, number>();
  for (const t of g) counts.set(t, (counts.get(t) ?? 0) + 1);
  let common = 0;
  for (const t of p) {
    const c = counts.get(t) ?? 0;
    if (c > 0) {
      common += 1;
      counts.set(t, c - 1);
    }
  }
  if (common === 0) return 0;
  const precision = common / p.length;
  const recall = common / g.length;
  return (2 * precision * recall) / (precision + recall);
}

/** ReCoRD: mean over queries of the best F1 and EM of the predicted entity against any gold answer. */
export function recordScores(
  predicted: readonly string[],
  answers: ReadonlyArray<readonly string[]>,
): { f1: number; exact_match: number } {
  sameLength(predicted, answers);
  let f1 = 0;
  let em = 0;
  predicted.forEach((p, i) => {
    const gold = answers[i]!;
    if (gold.length === 0) return;
    f1 += Math.max(...gold.map((g) => tokenF1(p, g)));
    em += gold.some((g) => normalizeAnswer(p) === normalizeAnswer(g)) ? 1 : 0;
  });
  const n = Math.max(predicted.length, 1);
  return { f1: f1 / n, exact_match: em / n };
}

function sameLength(a: readonly unknown[], b: readonly unknown[]): void {
  if (a.length !== b.length)
    throw new BadamOptionError('predictions', `${a.length} predictions`, `${b.length} (one per label)`);
}
