import 'uplot/dist/uPlot.min.css';
import './board.css';
import { type ChartRun, RunCharts } from './run-charts.js';
import type { LogLine } from './run-series.js';

/** What the server's event stream sends (see the server's RunFeed). */
type BoardEvent =
  | { type: 'runs'; runs: Array<ChartRun & { dir: string }> }
  | { type: 'lines'; run: number; lines: LogLine[] }
  | { type: 'reset'; run: number }
  | { type: 'results'; run: number; results: Record<string, unknown> };

const root = document.getElementById('board')!;
const status = document.getElementById('status')!;
let charts: RunCharts | undefined;

// One stream for all runs: browsers allow few connections per origin, and runs overlay anyway.
const source = new EventSource('/api/events');
const on = (type: BoardEvent['type'], handle: (event: BoardEvent) => void) =>
  source.addEventListener(type, (message) =>
    handle(JSON.parse((message as MessageEvent<string>).data) as BoardEvent),
  );

on('runs', (event) => {
  if (event.type !== 'runs') return;
  document.title = `badam-board: ${event.runs.map((r) => r.name).join(', ')}`;
  if (charts === undefined) charts = new RunCharts(root, event.runs);
  else charts.setRuns(event.runs);
  status.textContent = `live: ${event.runs.length} run${event.runs.length === 1 ? '' : 's'}`;
  status.title = event.runs.map((r) => r.dir).join('\n');
  status.className = 'live';
});
on('lines', (event) => event.type === 'lines' && charts?.addLines(event.run, event.lines));
on('reset', (event) => event.type === 'reset' && charts?.reset(event.run));
on('results', (event) => event.type === 'results' && charts?.setResults(event.run, event.results));
source.addEventListener('error', () => {
  status.textContent = 'disconnected from badam-board: the charts keep what they showed (reconnecting...)';
  status.className = 'offline';
});
source.addEventListener('open', () => {
  if (status.className === 'offline') status.className = 'live';
});
