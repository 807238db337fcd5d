#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { UsageError } from '@badam/core';
import { PARENT_ENDED, runBoardCommand } from './board-command.js';

const io = { log: (m: string) => console.log(m), warn: (m: string) => console.error(m) };
const argv = process.argv.slice(2);
try {
  if (argv.includes('--version') || argv.includes('-V')) {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
    io.log(`badam-board ${(pkg as { version: string }).version}`);
    process.exit(0);
  }
  const board = await runBoardCommand(argv, io, process.stdin, () => process.exit(0));
  if (board) {
    // With --stdin the parent stops the board (SIGTERM) when its training ends: the pages say so.
    const reason = argv.includes('--stdin') ? PARENT_ENDED : undefined;
    const stop = () => void board.close(reason).then(() => process.exit(0));
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  }
} catch (error) {
  io.warn(`badam-board: error: ${(error as Error).message}`);
  if (error instanceof UsageError) io.warn('Run badam-board --help for the flags.');
  // Exit now: nothing the failed start opened (standard input above all) may keep the process waiting.
  process.exit(error instanceof UsageError ? 2 : 1);
}
