import type { TrainerCallback } from '@badam/core';
import { BlockSwitchLogCallback } from './block-switch-log-callback.js';
import { InterruptCallback } from './interrupt-callback.js';
import { LossPlotCallback } from './loss-plot.js';
import { LossSpikeMonitor } from './loss-spike-monitor.js';
import { MetricsLogCallback } from './metrics-log-callback.js';
import { NonFiniteLossGuard } from './non-finite-loss-guard.js';
import { ProgressCallback } from './progress-callback.js';

/** Where a training run's messages go: plain lines, warnings, and the progress stream. */
export interface RunIO {
  log(message: string): void;
  warn(message: string): void;
  /** Progress output (default stdout). */
  stream?: NodeJS.WriteStream;
}

/** Options of {@link runCallbacks}. */
export interface RunCallbacksOptions {
  /** Where trainer_log.jsonl and training_loss.png go. */
  outputDir: string;
  /** Progress line every N steps. */
  loggingSteps: number;
  /** Write training_loss.png. */
  plotLoss: boolean;
  /** Log BAdam's block switches at this verbosity (0: not at all). */
  blockSwitchVerbose: 0 | 1 | 2;
  log: (message: string) => void;
  warn: (message: string) => void;
  /** Progress output (default stdout). */
  stream?: NodeJS.WriteStream;
}

/**
 * The callbacks a fine-tuning run wants, as the runners use them: the progress line, trainer_log.jsonl,
 * the NaN guard, the loss-spike warning, Ctrl-C handling, BAdam's block-switch log and the loss plot.
 */
export function runCallbacks(options: RunCallbacksOptions): TrainerCallback[] {
  return [
    new ProgressCallback({
      every: options.loggingSteps,
      ...(options.stream ? { stream: options.stream } : {}),
    }),
    new MetricsLogCallback({ outputDir: options.outputDir }),
    new NonFiniteLossGuard({ warn: options.warn }),
    new LossSpikeMonitor({ warn: options.warn }),
    new InterruptCallback({ log: options.warn }),
    ...(options.blockSwitchVerbose > 0
      ? [new BlockSwitchLogCallback({ verbose: options.blockSwitchVerbose, log: options.log })]
      : []),
    ...(options.plotLoss ? [new LossPlotCallback({ outputDir: options.outputDir })] : []),
  ];
}
