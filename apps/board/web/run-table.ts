import { formatValue } from './chart-panel.js';
import type { ChartRun } from './chart-specs.js';
import { MIB } from './chart-specs.js';
import type { RunSeries } from './run-series.js';

/** What the table shows of a run. */
export interface TableRow {
  readonly run: ChartRun;
  readonly color: string;
  readonly s: RunSeries;
  readonly results: Readonly<Record<string, unknown>>;
  readonly shown: boolean;
  readonly matches: boolean;
  readonly notes: number;
}

const number = (v: unknown): number | undefined =>
  typeof v === 'number' && Number.isFinite(v) ? v : undefined;

/** A result by any of its names, from any results file (all_results.json first). */
function result(results: Readonly<Record<string, unknown>>, ...keys: string[]): number | undefined {
  const files = ['all_results.json', 'eval_results.json', 'train_results.json', 'predict_results.json'];
  for (const file of [...files, ...Object.keys(results).filter((f) => !files.includes(f))]) {
    const content = results[file];
    if (typeof content !== 'object' || content === null) continue;
    for (const key of keys) {
      const v = number((content as Record<string, unknown>)[key]);
      if (v !== undefined) return v;
    }
  }
  return undefined;
}

/** The held-out exact match of the embedded default (embedded_results.json's `after.all`), if written. */
function embeddedExactMatch(results: Readonly<Record<string, unknown>>): number | undefined {
  const after = (results['embedded_results.json'] as { after?: { all?: unknown } } | undefined)?.after;
  return number(after?.all);
}

/** Where the run stands: finished (results written), running, ended early (the board stopped), or waiting. */
export function runStatus(row: Pick<TableRow, 's' | 'results'>, boardStopped: boolean): string {
  if (result(row.results, 'train_loss', 'train_runtime') !== undefined) return 'finished';
  if (row.s.lastStep === 0) return boardStopped ? 'no log' : 'waiting for trainer_log.jsonl';
  if (row.s.totalSteps !== undefined && row.s.lastStep >= row.s.totalSteps)
    return 'finished (no results file)';
  return boardStopped ? `stopped at step ${row.s.lastStep}` : 'running';
}

/** The columns of the runs table: [class, heading, tooltip]. */
export const COLUMNS: ReadonlyArray<[string, string, string]> = [
  ['show', '', 'show or hide the run in every chart'],
  ['name', 'run', ''],
  ['step', 'step', ''],
  ['loss', 'loss', 'the latest training loss'],
  ['eval-loss', 'eval loss', 'the latest eval loss'],
  ['eval-accuracy', 'eval accuracy', 'eval_accuracy: token accuracy on the held-out split'],
  ['exact-match', 'exact match', 'greedy answers equal to the expected ones (held out)'],
  ['block', 'block', 'the block training now'],
  ['switches', 'switches', 'block switches so far'],
  [
    'peak-memory',
    'peak memory (MiB)',
    'the most the backend held at any moment (activations included); the memory chart shows what it holds between steps',
  ],
  ['runtime', 'time (s)', 'train_runtime'],
  ['status', 'status', ''],
];

/** The table's cells of one run: [class, text]. */
export function rowCells(row: TableRow, boardStopped: boolean): Array<[string, string]> {
  const { s, results } = row;
  const fixed = (v: number | undefined, digits: number) => (v === undefined ? '-' : v.toFixed(digits));
  const evalAccuracy = s.evalScores.get('eval_accuracy')?.values.at(-1) ?? result(results, 'eval_accuracy');
  const exact =
    result(results, 'exact_match_after', 'predict_exact_match', 'exact_match') ?? embeddedExactMatch(results);
  const peak = result(results, 'peak_memory_bytes');
  return [
    ['show', ''],
    ['name', row.run.name],
    ['step', `${s.lastStep}${s.totalSteps !== undefined ? ` / ${s.totalSteps}` : ''}`],
    ['loss', fixed(s.latestLoss(), 4)],
    ['eval-loss', fixed(s.evalLoss.at(-1) ?? result(results, 'eval_loss'), 4)],
    ['eval-accuracy', fixed(evalAccuracy, 4)],
    ['exact-match', fixed(exact, 3)],
    ['block', s.activeBlock !== undefined ? String(s.activeBlock) : '-'],
    ['switches', String(s.switches.length)],
    ['peak-memory', peak === undefined ? '-' : (peak / MIB).toFixed(1)],
    [
      'runtime',
      (() => {
        const t = result(results, 'train_runtime');
        return t === undefined ? '-' : formatValue(t);
      })(),
    ],
    [
      'status',
      runStatus(row, boardStopped) +
        (row.notes > 0 ? ` · ${row.notes} note${row.notes === 1 ? '' : 's'}` : ''),
    ],
  ];
}

/** True when `name` matches the filter: a case-insensitive regular expression, or plain text if it is not one. */
export function matchesFilter(name: string, filter: string): boolean {
  const text = filter.trim();
  if (text === '') return true;
  try {
    return new RegExp(text, 'i').test(name);
  } catch {
    return name.toLowerCase().includes(text.toLowerCase());
  }
}
