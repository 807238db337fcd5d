#!/usr/bin/env node
import { UsageError } from '@badam/core';
import { runBoardCommand } from './board-command.js';

const io = { log: (m: string) => console.log(m), warn: (m: string) => console.error(m) };
try {
  const board = await runBoardCommand(process.argv.slice(2), io, process.stdin, () => process.exit(0));
  if (board) {
    const stop = () => void board.close().then(() => process.exit(0));
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  }
} catch (error) {
  io.warn(`badam-board: error: ${(error as Error).message}`);
  if (error instanceof UsageError) io.warn('Run badam-board --help for the flags.');
  process.exitCode = error instanceof UsageError ? 2 : 1;
}
