import { BadamOptionError } from '@badam/core';
import type { DeviceTensor } from '../device-tensor.js';
import type { LlamaNet } from './llama-net.js';
import type { StepTensors } from './step-tensors.js';

/** One micro-batch of token ids and labels, right-padded rows of `seqLen` tokens. */
export interface DeviceLlamaBatch {
  batchSize: number;
  seqLen: number;
  /** [batchSize * seqLen] token ids. */
  inputIds: Int32Array;
  /** [batchSize * seqLen], unshifted like Hugging Face (position s predicts labels[s + 1]); -100 = ignored. */
  labels: Int32Array;
  /** [batchSize] tokens before right padding (keys at >= length are masked). Default seqLen. */
  lengths?: Int32Array;
}

/** HF's label of positions that are not trained on. */
export const IGNORE_INDEX = -100;

/** The host-side facts of a validated batch, with its ids (and lengths, when some row is padded) uploaded. */
export interface PreparedBatch {
  readonly b: number;
  readonly s: number;
  readonly n: number;
  readonly tokens: number;
  /** Token rows n (= b * S + s) that predict a label, and the label they predict (labels[n + 1]). */
  readonly rows: Int32Array;
  readonly rowLabels: Int32Array;
  readonly ids: DeviceTensor;
  readonly lengths: DeviceTensor | null;
}

/** Checks the batch on the host, finds the labelled rows and uploads ids and lengths. */
export function prepareBatch(net: LlamaNet, batch: DeviceLlamaBatch, t: StepTensors): PreparedBatch {
  const { batchSize: b, seqLen: s, inputIds, labels } = batch;
  const V = net.config.vocabSize;
  if (!Number.isSafeInteger(b) || b < 1) throw new BadamOptionError('batch.batchSize', b, 'an integer >= 1');
  if (!Number.isSafeInteger(s) || s < 1) throw new BadamOptionError('batch.seqLen', s, 'an integer >= 1');
  if (s > net.maxPositions)
    throw new BadamOptionError(
      'batch.seqLen',
      s,
      `at most ${net.maxPositions} (the RoPE table)`,
      'truncate the sequences or create the model with a larger maxPositions option',
    );
  const n = b * s;
  for (const [what, array] of [
    ['batch.inputIds', inputIds],
    ['batch.labels', labels],
  ] as const) {
    if (!(array instanceof Int32Array) || array.length !== n)
      throw new BadamOptionError(
        what,
        array instanceof Int32Array ? `${array.length} values` : describe(array),
        `an Int32Array of batchSize * seqLen = ${b} * ${s} = ${n} values`,
      );
  }
  for (let i = 0; i < n; i++) {
    const id = inputIds[i]!;
    if (id < 0 || id >= V)
      throw new BadamOptionError(
        `batch.inputIds[${i}]`,
        id,
        `a token id in [0, ${V}) (vocab_size ${V})`,
        'the tokenizer does not match the model, or padding uses an id outside the vocabulary',
      );
    const label = labels[i]!;
    if (label !== IGNORE_INDEX && (label < 0 || label >= V))
      throw new BadamOptionError(
        `batch.labels[${i}]`,
        label,
        `-100 (ignored) or a token id in [0, ${V})`,
        'mark positions that are not trained on with -100',
      );
  }
  let lengths: Int32Array | undefined;
  if (batch.lengths !== undefined) {
    lengths = batch.lengths;
    if (!(lengths instanceof Int32Array) || lengths.length !== b)
      throw new BadamOptionError(
        'batch.lengths',
        describe(lengths),
        `an Int32Array of batchSize = ${b} values`,
      );
    lengths.forEach((len, i) => {
      if (!Number.isSafeInteger(len) || len < 1 || len > s)
        throw new BadamOptionError(`batch.lengths[${i}]`, len, `a length in [1, seqLen = ${s}]`);
    });
  }
  // Position s of row r predicts labels[r, s + 1]; the last position predicts nothing.
  const rows: number[] = [];
  const rowLabels: number[] = [];
  for (let r = 0; r < b; r++) {
    for (let pos = 0; pos + 1 < s; pos++) {
      const label = labels[r * s + pos + 1]!;
      if (label === IGNORE_INDEX) continue;
      rows.push(r * s + pos);
      rowLabels.push(label);
    }
  }
  const tokens = lengths ? lengths.reduce((a, x) => a + x, 0) : n;
  const ids = t.alloc([n], 'int32', 'workspace').write(inputIds);
  const lengthsTensor = lengths?.some((len) => len < s)
    ? t.alloc([b], 'int32', 'workspace').write(lengths)
    : null;
  return {
    b,
    s,
    n,
    tokens,
    rows: Int32Array.from(rows),
    rowLabels: Int32Array.from(rowLabels),
    ids,
    lengths: lengthsTensor,
  };
}

function describe(value: unknown): string {
  return value === undefined ? 'undefined' : ((value as object).constructor?.name ?? typeof value);
}
