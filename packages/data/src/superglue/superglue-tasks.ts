import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { BadamOptionError } from '@badam/core';
import { readRecordsWithLines } from '../alpaca-dataset.js';
import { pushAll } from '../push-all.js';

/** The SuperGLUE tasks. */
export const SUPERGLUE_TASKS = ['boolq', 'cb', 'copa', 'rte', 'wic', 'wsc', 'multirc', 'record'] as const;
export type SuperGlueTask = (typeof SUPERGLUE_TASKS)[number];

/**
 * One model input row: a text or a text pair. Classification tasks give one row per example; multiple
 * choice (COPA) one per choice; MultiRC one per answer and ReCoRD one per candidate entity, grouped.
 */
export interface TaskExample {
  /** Index of the example in its file (`idx` when present). */
  readonly id: string;
  /** The texts of each row scored for this example: one row, or one per choice / candidate. */
  readonly rows: ReadonlyArray<readonly [string, string | undefined]>;
  /** Class index (classification), index of the right row (multiple choice), or -1 when unlabelled. */
  readonly label: number;
  /** MultiRC: the question the answer belongs to (EM is per question). ReCoRD: the query. */
  readonly group?: string;
  /** ReCoRD: the candidate entity of each row and the gold answers, for F1 / EM. */
  readonly candidates?: readonly string[];
  readonly answers?: readonly string[];
}

/** How a task is modelled. */
export interface TaskSpec {
  readonly name: SuperGlueTask;
  /** `classification` (one row, numLabels classes) or `multiple-choice` (softmax over rows). */
  readonly kind: 'classification' | 'multiple-choice';
  readonly numLabels: number;
  readonly labelNames: readonly string[];
  /** The metrics SuperGLUE reports for it. */
  readonly metrics: readonly string[];
}

export const TASK_SPECS: Readonly<Record<SuperGlueTask, TaskSpec>> = {
  boolq: {
    name: 'boolq',
    kind: 'classification',
    numLabels: 2,
    labelNames: ['False', 'True'],
    metrics: ['accuracy'],
  },
  cb: {
    name: 'cb',
    kind: 'classification',
    numLabels: 3,
    labelNames: ['entailment', 'contradiction', 'neutral'],
    metrics: ['accuracy', 'f1_macro'],
  },
  copa: {
    name: 'copa',
    kind: 'multiple-choice',
    numLabels: 2,
    labelNames: ['choice1', 'choice2'],
    metrics: ['accuracy'],
  },
  rte: {
    name: 'rte',
    kind: 'classification',
    numLabels: 2,
    labelNames: ['entailment', 'not_entailment'],
    metrics: ['accuracy'],
  },
  wic: {
    name: 'wic',
    kind: 'classification',
    numLabels: 2,
    labelNames: ['False', 'True'],
    metrics: ['accuracy'],
  },
  wsc: {
    name: 'wsc',
    kind: 'classification',
    numLabels: 2,
    labelNames: ['False', 'True'],
    metrics: ['accuracy'],
  },
  multirc: {
    name: 'multirc',
    kind: 'classification',
    numLabels: 2,
    labelNames: ['False', 'True'],
    metrics: ['f1a', 'exact_match'],
  },
  record: {
    name: 'record',
    kind: 'classification',
    numLabels: 2,
    labelNames: ['False', 'True'],
    metrics: ['f1', 'exact_match'],
  },
};

type Row = Record<string, unknown>;

function field<T>(row: Row, key: string, where: string, check: (v: unknown) => boolean, expected: string): T {
  const value = row[key];
  if (!check(value)) throw new BadamOptionError(`${where} field "${key}"`, value, expected);
  return value as T;
}
const str = (row: Row, key: string, where: string) =>
  field<string>(row, key, where, (v) => typeof v === 'string', 'a string');

/** A label given as an index, a boolean or a label name, as an index into `names` (-1 when absent). */
function labelOf(row: Row, key: string, names: readonly string[], where: string): number {
  const value = row[key];
  if (value === undefined || value === null) return -1;
  if (typeof value === 'boolean') return value ? 1 : 0;
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 && value < names.length)
    return value;
  if (typeof value === 'string' && names.includes(value)) return names.indexOf(value);
  throw new BadamOptionError(
    `${where} field "${key}"`,
    value,
    `a label: 0..${names.length - 1}, true / false or one of ${names.join(', ')}`,
  );
}

/** One record of a task's jsonl file as examples: its row, its id, where it stands, the task's labels. */
type RecordReader = (row: Row, id: string, where: string, labelNames: readonly string[]) => TaskExample[];

const object = (v: unknown) => typeof v === 'object' && v !== null;

/** A pair task's record: the two texts and the label. */
const pairRecord =
  (first: string, second: string): RecordReader =>
  (row, id, where, labelNames) => [
    {
      id,
      rows: [[str(row, first, where), str(row, second, where)]],
      label: labelOf(row, 'label', labelNames, where),
    },
  ];

/** COPA: the premise against each choice, asked as its cause or its effect. */
const copaRecord: RecordReader = (row, id, where, labelNames) => {
  const question = str(row, 'question', where);
  if (question !== 'cause' && question !== 'effect')
    throw new BadamOptionError(`${where} field "question"`, question, '"cause" or "effect"');
  const ask = question === 'cause' ? 'What was the cause?' : 'What happened as a result?';
  const premise = str(row, 'premise', where);
  return [
    {
      id,
      rows: [
        [premise, `${ask} ${str(row, 'choice1', where)}`],
        [premise, `${ask} ${str(row, 'choice2', where)}`],
      ],
      label: labelOf(row, 'label', labelNames, where),
    },
  ];
};

/** WSC: the text and whether the pronoun refers to the span. */
const wscRecord: RecordReader = (row, id, where, labelNames) => {
  const target = field<Row>(row, 'target', where, object, 'an object with span1_text and span2_text');
  return [
    {
      id,
      rows: [
        [
          str(row, 'text', where),
          `Does "${str(target, 'span2_text', `${where} target`)}" refer to "${str(target, 'span1_text', `${where} target`)}"?`,
        ],
      ],
      label: labelOf(row, 'label', labelNames, where),
    },
  ];
};

/** MultiRC: one example per answer of each question of the passage, grouped by question. */
const multircRecord: RecordReader = (row, id, where, labelNames) => {
  const passage = field<Row>(row, 'passage', where, object, 'an object with text and questions');
  const text = str(passage, 'text', `${where} passage`);
  const questions = field<Row[]>(
    passage,
    'questions',
    `${where} passage`,
    Array.isArray,
    'a list of questions',
  );
  return questions.flatMap((q, qi) => {
    const question = str(q, 'question', `${where} question ${qi}`);
    const answers = field<Row[]>(q, 'answers', `${where} question ${qi}`, Array.isArray, 'a list of answers');
    return answers.map((a, ai) => {
      const at = `${where} question ${qi} answer ${ai}`;
      return {
        id: `${id}-${String(q.idx ?? qi)}-${String(a.idx ?? ai)}`,
        rows: [[text, `${question} ${str(a, 'text', at)}`] as const],
        label: labelOf(a, 'label', labelNames, at),
        group: `${id}-${String(q.idx ?? qi)}`,
      };
    });
  });
};

/** ReCoRD: each query with `@placeholder` filled by every entity of the passage; the answer's index is the label. */
const recordRecord: RecordReader = (row, id, where) => {
  const passage = field<Row>(row, 'passage', where, object, 'an object with text and entities');
  const text = str(passage, 'text', `${where} passage`);
  const entities = field<Row[]>(
    passage,
    'entities',
    `${where} passage`,
    Array.isArray,
    'a list of {start, end} spans',
  );
  const names = [...new Set(entities.map((e) => text.slice(Number(e.start), Number(e.end) + 1)))];
  const qas = field<Row[]>(row, 'qas', where, Array.isArray, 'a list of queries');
  return qas.map((qa, qi) => {
    const query = str(qa, 'query', `${where} query ${qi}`);
    if (!query.includes('@placeholder'))
      throw new BadamOptionError(`${where} query ${qi}`, query, 'a query with @placeholder');
    const answers = Array.isArray(qa.answers)
      ? (qa.answers as Row[]).map((a) => str(a, 'text', `${where} query ${qi} answer`))
      : [];
    return {
      id: `${id}-${String(qa.idx ?? qi)}`,
      rows: names.map((entity) => [text, query.replace('@placeholder', entity)] as const),
      label: names.findIndex((n) => answers.includes(n)),
      group: `${id}-${String(qa.idx ?? qi)}`,
      candidates: names,
      answers,
    };
  });
};

/** How each task's records become examples (the formats of the public task data). */
const RECORD_READERS: Readonly<Record<SuperGlueTask, RecordReader>> = {
  // The question first: a long passage is what truncation cuts. BoolQ's label is in `answer`.
  boolq: (row, id, where, labelNames) => [
    {
      id,
      rows: [[str(row, 'question', where), str(row, 'passage', where)]],
      label: labelOf(row, row.answer !== undefined ? 'answer' : 'label', labelNames, where),
    },
  ],
  cb: pairRecord('premise', 'hypothesis'),
  rte: pairRecord('premise', 'hypothesis'),
  wic: (row, id, where, labelNames) => [
    {
      id,
      rows: [[`${str(row, 'word', where)}: ${str(row, 'sentence1', where)}`, str(row, 'sentence2', where)]],
      label: labelOf(row, 'label', labelNames, where),
    },
  ],
  copa: copaRecord,
  wsc: wscRecord,
  multirc: multircRecord,
  record: recordRecord,
};

/**
 * Turns the records of a SuperGLUE jsonl file into model rows (the formats of the public task data: BoolQ's
 * label in `answer`, COPA's `question` cause / effect, MultiRC's nested passage / questions / answers,
 * ReCoRD's entity spans and `@placeholder` queries). A malformed record is an error naming it.
 */
export function superGlueExamples(
  task: SuperGlueTask,
  records: readonly unknown[],
  source: string = task,
  options: SuperGlueReadOptions = {},
): TaskExample[] {
  const spec = TASK_SPECS[task];
  if (spec === undefined) throw new BadamOptionError('task', task, `one of ${SUPERGLUE_TASKS.join(', ')}`);
  const out: TaskExample[] = [];
  records.forEach((record, i) => {
    const line = options.lines?.[i];
    const where = line !== undefined ? `${source} line ${line}` : `${source} record ${i}`;
    if (typeof record !== 'object' || record === null)
      throw new BadamOptionError(where, record, 'a JSON object');
    const row = record as Row;
    const examples = RECORD_READERS[task](row, String(row.idx ?? i), where, spec.labelNames);
    if (options.requireLabels) {
      const unlabelled = examples.find((example) => example.label < 0);
      if (unlabelled !== undefined) {
        throw new BadamOptionError(
          task === 'multirc' ? `${where} (answer ${unlabelled.id})` : where,
          task === 'record' ? 'no answer among the passage entities' : 'no label',
          task === 'record'
            ? 'a query whose answer is one of the passage entities'
            : `a labelled example (${spec.labelNames.join(' / ')})`,
          'train and val files need a label on every example; unlabelled test files are only for prediction',
        );
      }
    }
    pushAll(out, examples);
  });
  return out;
}

/** How {@link superGlueExamples} reads records. */
export interface SuperGlueReadOptions {
  /** 1-based line of each record in its file, for error messages. */
  readonly lines?: readonly number[] | undefined;
  /** Every example must have a label (train and val splits): an unlabelled one is an error, not label -1. */
  readonly requireLabels?: boolean;
}

/** Reads `<dir>/<task>/<split>.jsonl` (the layout of ../shared/data/superglue) into task examples. */
export async function loadSuperGlue(
  directory: string,
  task: SuperGlueTask,
  split: 'train' | 'val' | 'test',
): Promise<TaskExample[]> {
  const path = join(directory, task, `${split}.jsonl`);
  if (!existsSync(path))
    throw new BadamOptionError(
      `${task} ${split} data`,
      path,
      'a readable SuperGLUE jsonl file',
      'the file does not exist',
    );
  const { records, lines } = await readRecordsWithLines(path);
  const examples = superGlueExamples(task, records, path, { lines, requireLabels: split !== 'test' });
  if (examples.length === 0)
    throw new BadamOptionError(
      `${task} ${split} data`,
      path,
      'a file with at least one example',
      'it has none',
    );
  return examples;
}
