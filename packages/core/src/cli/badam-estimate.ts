#!/usr/bin/env node
import { runEstimateCommand } from './estimate-command.js';

process.exitCode = runEstimateCommand(process.argv.slice(2), console);
