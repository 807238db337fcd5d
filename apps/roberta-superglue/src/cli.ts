#!/usr/bin/env node
import { runRobertaCommand } from './command.js';

const code = await runRobertaCommand(process.argv.slice(2), {
  log: (m) => console.log(m),
  warn: (m) => console.error(m),
});
process.exitCode = code;
