import type { RunWatcher } from '@badam/core';
import { type SpawnedBoard, spawnBoard } from './spawn-board.js';

/** The process's one board: every run of the process (pretraining, then fine-tuning; compare's four) joins it. */
let board: Promise<SpawnedBoard> | undefined;

/**
 * badam-board as core's {@link RunWatcher}, what a runner's `--board` starts: the run in `outputDir` shown on
 * badam-board, started on 127.0.0.1 (any free port) in a child process the first time, with a line saying
 * where to look; if the board cannot start, a warning says why and the run goes on. The board stops when
 * this process exits; the run's files stay, for `badam-board <outputDir>` later.
 *
 * @example
 * ```ts
 * await fineTune({ ...spec, runWatcher: boardRunWatcher }); // with --board
 * ```
 */
export const boardRunWatcher: RunWatcher = {
  async watch(outputDir, io) {
    const first = board === undefined;
    board ??= spawnBoard([], { port: 0 });
    let running: SpawnedBoard;
    try {
      running = await board;
    } catch (error) {
      // The board is a view: a run goes on without it.
      board = undefined;
      io.warn(`badam-board did not start, the run goes on without it: ${(error as Error).message}`);
      return;
    }
    running.watch(outputDir);
    if (first) {
      io.log(
        `badam-board: watch the run live at ${running.url} (it stops with this process; to look again later: badam-board OUTPUT_DIR)`,
      );
    }
  },
};
