import { type SpawnedBoard, spawnBoard } from '@badam/board';
import type { RunIO } from '@badam/callbacks';

/** The process's one board: every run of the process (pretraining, then fine-tuning; compare's four) joins it. */
let board: Promise<SpawnedBoard> | undefined;

/**
 * `--board`: shows the run in `outputDir` on badam-board, started on 127.0.0.1 (any free port) in a child
 * process the first time, and prints where to look; if the board cannot start, a warning says why and the
 * run goes on. The board stops when this process exits; the run's
 * files stay, for `badam-board <outputDir>` later.
 */
export async function watchOnBoard(outputDir: string, io: RunIO): Promise<void> {
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
}
