import 'uplot/dist/uPlot.min.css';
import './board.css';
import type { OutputImage } from './outputs-view.js';
import { type ChartRun, RunCharts } from './run-charts.js';
import type { LogLine } from './run-series.js';

/** What the server's event stream sends (see the server's RunFeed and ComparisonFeed). */
type BoardEvent =
  | {
      type: 'runs';
      runs: Array<ChartRun & { dir: string }>;
      comparisons?: Array<{ id: number; name: string; dir: string }>;
    }
  | { type: 'lines'; run: number; lines: LogLine[] }
  | { type: 'reset'; run: number }
  | { type: 'results'; run: number; results: Record<string, unknown> }
  | { type: 'images'; run: number; images: OutputImage[] }
  | { type: 'note'; run: number; message: string }
  | { type: 'comparison'; comparison: number; table?: string; images: OutputImage[] }
  | { type: 'closed'; message: string };

const root = document.getElementById('board')!;
const status = document.getElementById('status')!;
let charts: RunCharts | undefined;
let dirs: string[] = [];
/** Events that came before the runs were named (a comparison's, from a board adding a run). */
const early: BoardEvent[] = [];
/** How long the stream may be down before the page says the board is gone (EventSource keeps retrying). */
const GONE_AFTER_MS = 5000;
let goneTimer: number | undefined;

function setStatus(text: string, state: 'live' | 'offline' | 'final', title = dirs.join('\n')): void {
  status.textContent = text;
  status.className = state;
  status.title = title;
}

/** The board stopped: the charts keep their last state and stay usable (hover, export); no more retries. */
function final(message: string): void {
  source.close();
  if (goneTimer !== undefined) clearTimeout(goneTimer);
  const again = dirs.length > 0 ? ` To look again: badam-board ${dirs.join(' ')}` : '';
  setStatus(`${message}.${again}`, 'final');
  charts?.stop(message);
}

function handle(event: BoardEvent): void {
  if (event.type === 'runs') {
    dirs = event.runs.map((r) => r.dir);
    document.title = `badam-board: ${event.runs.map((r) => r.name).join(', ')}`;
    if (charts === undefined) charts = new RunCharts(root, event.runs);
    else charts.setRuns(event.runs);
    for (const c of event.comparisons ?? []) charts.setComparison({ id: c.id, name: c.name, dir: c.dir });
    setStatus(`live: ${event.runs.length} run${event.runs.length === 1 ? '' : 's'}`, 'live');
    for (const e of early.splice(0)) handle(e);
    return;
  }
  if (event.type === 'closed') {
    final(event.message);
    return;
  }
  if (charts === undefined) {
    early.push(event);
    return;
  }
  if (event.type === 'lines') charts.addLines(event.run, event.lines);
  else if (event.type === 'reset') charts.reset(event.run);
  else if (event.type === 'results') charts.setResults(event.run, event.results);
  else if (event.type === 'images') charts.setImages(event.run, event.images);
  else if (event.type === 'note') charts.addNote(event.run, event.message);
  else if (event.type === 'comparison') {
    charts.setComparison({
      id: event.comparison,
      ...(event.table !== undefined ? { table: event.table } : {}),
      images: event.images,
    });
  }
}

// One stream for all runs: browsers allow few connections per origin, and runs overlay anyway.
const source = new EventSource('/api/events');
for (const type of ['runs', 'lines', 'reset', 'results', 'images', 'note', 'comparison', 'closed']) {
  source.addEventListener(type, (message) =>
    handle(JSON.parse((message as MessageEvent<string>).data) as BoardEvent),
  );
}
source.addEventListener('error', () => {
  setStatus('disconnected from badam-board: the charts keep what they show (trying again)', 'offline');
  // A board that went away without a word (killed): after a while, a final state instead of retrying forever.
  goneTimer ??= window.setTimeout(
    () => final('badam-board is not answering (its process ended?)'),
    GONE_AFTER_MS,
  );
});
source.addEventListener('open', () => {
  if (goneTimer !== undefined) clearTimeout(goneTimer);
  goneTimer = undefined;
  if (status.className === 'offline') status.className = 'live';
});
