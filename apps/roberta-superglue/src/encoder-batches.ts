import { arrayDataSource, type DataSource, type EvaluationResult } from '@badam/core';
import {
  checkTokenIds,
  encodeSentencePair,
  type PairFormat,
  type TaskExample,
  type Tokenizer,
} from '@badam/data';
import type { EncoderClassifier } from '@badam/models';
import type { TfjsTrainingTask } from '@badam/tfjs';
import * as tf from '@tensorflow/tfjs-core';

/** One training or evaluation item: the encoded rows of an example and its label. */
export interface EncodedItem {
  readonly rows: ReadonlyArray<{ inputIds: number[]; tokenTypeIds: number[] }>;
  readonly label: number;
}

/** A padded micro-batch: `rows` = examples x rows per example. */
export interface EncoderRowsBatch {
  readonly inputIds: number[][];
  readonly attentionMask: number[][];
  readonly tokenTypeIds: number[][];
  readonly labels: number[];
  /** Rows per example (multiple choice), else undefined. */
  readonly numChoices: number | undefined;
}

/**
 * Encodes examples for the model. Classification and multiple choice keep one item per example; ReCoRD's
 * candidates are scored one row at a time (`perRow`), each a binary item: is this entity the answer?
 * With `vocabSize` (the model's), a token id it has no embedding for is an error naming the example.
 */
export function encodeItems(
  examples: readonly TaskExample[],
  tokenizer: Tokenizer,
  format: PairFormat,
  maxLength: number,
  perRow = false,
  vocabSize?: number,
): EncodedItem[] {
  const encode = (index: number) => {
    return ([a, b]: readonly [string, string | undefined]) => {
      const pair = encodeSentencePair(tokenizer, format, a, b, { maxLength });
      checkTokenIds(pair.inputIds, vocabSize, index, a);
      return pair;
    };
  };
  if (!perRow) return examples.map((e, index) => ({ rows: e.rows.map(encode(index)), label: e.label }));
  return examples.flatMap((e, index) =>
    e.rows.map((row, i) => ({ rows: [encode(index)(row)], label: i === e.label ? 1 : 0 })),
  );
}

/** Pads items' rows to the longest in the batch (`padTokenId`, attention 0). */
export function collateItems(items: readonly EncodedItem[], padTokenId: number): EncoderRowsBatch {
  const rows = items.flatMap((i) => i.rows);
  const width = rows.reduce((m, r) => Math.max(m, r.inputIds.length), 0);
  const pad = (xs: number[], value: number) => [...xs, ...new Array<number>(width - xs.length).fill(value)];
  const choices = items[0]!.rows.length;
  return {
    inputIds: rows.map((r) => pad(r.inputIds, padTokenId)),
    attentionMask: rows.map((r) =>
      pad(
        r.inputIds.map(() => 1),
        0,
      ),
    ),
    tokenTypeIds: rows.map((r) => pad(r.tokenTypeIds, 0)),
    labels: items.map((i) => i.label),
    numChoices: choices > 1 ? choices : undefined,
  };
}

/** The trainer's data: seeded shuffles per epoch, padded batches of `batchSize` examples. */
export function itemDataSource(
  items: readonly EncodedItem[],
  batchSize: number,
  padTokenId: number,
  shuffleSeed?: number,
): DataSource<EncoderRowsBatch> {
  return arrayDataSource(items, {
    batchSize,
    collate: (batch) => collateItems(batch, padTokenId),
    ...(shuffleSeed !== undefined ? { shuffleSeed } : {}),
  });
}

function tensorsOf(batch: EncoderRowsBatch) {
  return {
    inputIds: tf.tensor2d(batch.inputIds, undefined, 'int32'),
    attentionMask: tf.tensor2d(batch.attentionMask, undefined, 'int32'),
    tokenTypeIds: tf.tensor2d(batch.tokenTypeIds, undefined, 'int32'),
    labels: tf.tensor1d(batch.labels, 'int32'),
    ...(batch.numChoices ? { numChoices: batch.numChoices } : {}),
  };
}

/** Class logits of a batch, as nested arrays [examples][classes]. */
export function batchLogits(model: EncoderClassifier, batch: EncoderRowsBatch): number[][] {
  return tf.tidy(() => model.logits(tensorsOf(batch), false).arraySync());
}

/** Classification training on encoded items: cross-entropy, tokens = unpadded tokens, eval loss and accuracy. */
export function classificationTask(model: EncoderClassifier): TfjsTrainingTask<EncoderRowsBatch> {
  return {
    loss: (batch) => tf.tidy(() => model.loss(tensorsOf(batch), true)),
    tokens: (batch) => batch.attentionMask.reduce((n, row) => n + row.reduce((a, b) => a + b, 0), 0),
    evaluate(batch): EvaluationResult {
      return tf.tidy(() => {
        const t = tensorsOf(batch);
        const logits = model.logits(t, false);
        const loss = tf
          .neg(tf.mean(tf.sum(tf.mul(tf.logSoftmax(logits), tf.oneHot(t.labels, logits.shape[1])), 1)))
          .dataSync()[0]!;
        const predicted = tf.argMax(logits, 1).dataSync();
        const correct = batch.labels.filter((l, i) => predicted[i] === l).length;
        return { loss, weight: batch.labels.length, metrics: { accuracy: correct / batch.labels.length } };
      });
    },
  };
}
