#!/usr/bin/env node
import { runCommand } from './command.js';

process.exitCode = await runCommand(process.argv.slice(2), {
  log: (m) => console.log(m),
  warn: (m) => console.error(m),
});
