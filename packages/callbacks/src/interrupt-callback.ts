import type { TrainerCallback, TrainerContext } from '@badam/core';

/**
 * Ctrl-C handling: the first SIGINT lets the current optimizer step finish, saves a checkpoint and stops
 * training; the process then exits with code 130 (set as `process.exitCode`). A second SIGINT exits at
 * once.
 */
export class InterruptCallback implements TrainerCallback {
  /** True once the signal arrived. */
  interrupted = false;
  private readonly signal: NodeJS.Signals;
  private readonly exitCode: number;
  private readonly log: (message: string) => void;
  private readonly handler = () => {
    if (this.interrupted) {
      this.log('BAdam: second interrupt: exiting without saving');
      process.exit(this.exitCode);
    }
    this.interrupted = true;
    this.log(
      'BAdam: interrupted: finishing the current step, then saving a checkpoint (Ctrl-C again to quit now)',
    );
  };

  constructor(options: { signal?: NodeJS.Signals; exitCode?: number; log?: (message: string) => void } = {}) {
    this.signal = options.signal ?? 'SIGINT';
    this.exitCode = options.exitCode ?? 130;
    this.log = options.log ?? ((m) => console.error(m));
  }

  onTrainBegin(): void {
    process.on(this.signal, this.handler);
  }

  onStepEnd(context: TrainerContext): void {
    if (!this.interrupted) return;
    context.control.requestSave();
    context.control.stop('interrupted');
  }

  onTrainEnd(): void {
    process.off(this.signal, this.handler);
    if (this.interrupted) process.exitCode = this.exitCode;
  }
}
