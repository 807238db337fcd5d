/**
 * @badam/board — `badam-board`: BAdam runs live in the browser (loss raw and smoothed, eval loss, learning
 * rate, gradient norm, tokens/s, memory by kind and the block timeline; comparisons grouped by method),
 * served from the runs' `trainer_log.jsonl`, results files and images; and a page that fine-tunes a tiny
 * Llama with BAdam inside the browser on TensorFlow.js (WebGPU, WebGL or wasm).
 *
 * @packageDocumentation
 */
export { BOARD_USAGE, type BoardIO, PARENT_ENDED, parseBoardArgs, runBoardCommand } from './board-command.js';
export { boardRunWatcher } from './board-run-watcher.js';
export {
  type BoardComparison,
  type BoardRun,
  comparisonCellOf,
  type Discovered,
  type DiscoveryLimits,
  describeRuns,
  discoverRuns,
  findRuns,
  RESULTS_FILES,
  runNames,
  TRAINER_LOG_FILE,
} from './board-runs.js';
export { type Board, type BoardOptions, DEFAULT_BOARD_PORT, startBoard } from './board-server.js';
export { type ComparisonEvent, ComparisonFeed } from './comparison-feed.js';
export { KeptLines } from './kept-lines.js';
export { logLineProblem, type TrainerLogLine } from './log-line-shape.js';
export { LogTail, type LogTailListener, type LogTailOptions } from './log-tail.js';
export { isLoopbackHost, isLoopbackHostHeader } from './loopback.js';
export { isInside, PathRefusedError, resolveInside, safeSegments } from './path-inside.js';
export { openRegularFile, readSmallFile, UnreadableFileError } from './regular-file.js';
export { RunFeed, type RunFeedEvent, type RunFeedOptions } from './run-feed.js';
export { isServedComparisonFile, isServedRunFile } from './served-files.js';
export { type SpawnedBoard, spawnBoard } from './spawn-board.js';
