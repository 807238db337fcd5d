/**
 * @badam/board — `badam-board`: BAdam runs live in the browser (loss raw and smoothed, eval loss, learning
 * rate, gradient norm, tokens/s, memory by kind and the block timeline), served from the runs'
 * `trainer_log.jsonl` and results files; and a page that fine-tunes a tiny Llama with BAdam inside the
 * browser on TensorFlow.js (WebGPU, WebGL or wasm).
 *
 * @packageDocumentation
 */
export { BOARD_USAGE, type BoardIO, parseBoardArgs, runBoardCommand } from './board-command.js';
export { boardRunWatcher } from './board-run-watcher.js';
export { type BoardRun, findRuns, RESULTS_FILES, TRAINER_LOG_FILE } from './board-runs.js';
export { type Board, type BoardOptions, DEFAULT_BOARD_PORT, startBoard } from './board-server.js';
export { LogTail, type LogTailListener } from './log-tail.js';
export { isInside, PathRefusedError, resolveInside, safeSegments } from './path-inside.js';
export { RunFeed, type RunFeedEvent, type TrainerLogLine } from './run-feed.js';
export { type SpawnedBoard, spawnBoard } from './spawn-board.js';
