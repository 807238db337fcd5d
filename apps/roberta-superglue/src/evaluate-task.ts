import {
  accuracy,
  ByteTokenizer,
  macroF1,
  multircScores,
  type PairFormat,
  pairFormat,
  recordScores,
  type TaskExample,
  type TaskSpec,
  type Tokenizer,
} from '@badam/data';
import type { EncoderClassifier } from '@badam/models';
import { evaluateHeldOut } from '@badam/tfjs';
import {
  batchLogits,
  classificationTask,
  collateItems,
  encodeItems,
  itemDataSource,
} from './encoder-batches.js';
import type { RobertaOptions } from './options.js';

/** A validation prediction as written to `val_predictions.jsonl`. */
export interface ValPrediction {
  readonly id: string;
  readonly label: number | string;
  readonly prediction: number | string;
}

/**
 * Predicts every example: the arg-max class (classification), the arg-max row (multiple choice), or for
 * ReCoRD the candidate whose row scores highest for "is the answer".
 */
export function predictTask(
  model: EncoderClassifier,
  examples: readonly TaskExample[],
  tokenizer: Tokenizer,
  format: PairFormat,
  maxLength: number,
  spec: TaskSpec,
  batchSize: number,
): number[] {
  const ranking = spec.name === 'record';
  const items = encodeItems(examples, tokenizer, format, maxLength, ranking);
  const scores: number[][] = [];
  for (let start = 0; start < items.length; start += batchSize) {
    scores.push(
      ...batchLogits(model, collateItems(items.slice(start, start + batchSize), tokenizer.padTokenId)),
    );
  }
  if (!ranking) return scores.map((row) => argMax(row));
  // ReCoRD: rows were flattened example by example; pick each query's best candidate.
  const out: number[] = [];
  let at = 0;
  for (const e of examples) {
    const margins = e.rows.map((_, i) => scores[at + i]![1]! - scores[at + i]![0]!);
    out.push(argMax(margins));
    at += e.rows.length;
  }
  return out;
}

/** SuperGLUE's metrics for `spec` from predictions aligned with `examples`. */
export function taskMetrics(
  spec: TaskSpec,
  examples: readonly TaskExample[],
  predictions: readonly number[],
): Record<string, number> {
  const labels = examples.map((e) => e.label);
  switch (spec.name) {
    case 'cb':
      return {
        accuracy: accuracy(predictions, labels),
        f1_macro: macroF1(predictions, labels, spec.numLabels),
      };
    case 'multirc':
      return multircScores(
        predictions,
        labels,
        examples.map((e) => e.group ?? e.id),
      );
    case 'record':
      return recordScores(
        predictions.map((p, i) => examples[i]!.candidates?.[p] ?? ''),
        examples.map((e) => e.answers ?? []),
      );
    default:
      return { accuracy: accuracy(predictions, labels) };
  }
}

/** The rows of `val_predictions.jsonl`: label names where the task has them. */
export function predictionRecords(
  spec: TaskSpec,
  examples: readonly TaskExample[],
  predictions: readonly number[],
): ValPrediction[] {
  const name = (i: number) =>
    spec.kind === 'classification' && spec.name !== 'record' ? (spec.labelNames[i] ?? i) : i;
  return examples.map((e, i) => ({
    id: e.id,
    label: spec.name === 'record' ? (e.answers ?? []).join(' | ') : name(e.label),
    prediction: spec.name === 'record' ? (e.candidates?.[predictions[i]!] ?? '') : name(predictions[i]!),
  }));
}

function argMax(values: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

/**
 * Eval loss and accuracy of the built-in tiny RoBERTa on `examples`, as the Trainer's evaluation computes
 * them (`compare` scores the split the run did not evaluate on with it).
 */
export async function heldOutScores(
  model: EncoderClassifier,
  examples: readonly TaskExample[],
  options: RobertaOptions,
): Promise<Record<string, number>> {
  const tokenizer = new ByteTokenizer();
  const positions = model.config.maxPositionEmbeddings - model.config.padTokenId - 1;
  const items = encodeItems(
    examples,
    tokenizer,
    pairFormat(tokenizer, model.config.family),
    Math.min(options.maxSeqLength, positions),
    false,
  );
  const { loss, metrics } = await evaluateHeldOut(
    classificationTask(model),
    itemDataSource(items, options.evalBatchSize, tokenizer.padTokenId),
  );
  return { eval_loss: loss, accuracy: metrics.accuracy ?? Number.NaN };
}
