import type { TrainerCallback, TrainerContext } from '@badam/core';
import { formatMemory } from './format.js';

/**
 * BAdam's log: each block switch with the step and the memory the backend holds (by kind), and at
 * verbose 2 the memory after every step, so the per-block footprint can be read off.
 */
export class BlockSwitchLogCallback implements TrainerCallback {
  private readonly verbose: 0 | 1 | 2;
  private readonly log: (message: string) => void;

  constructor(options: { verbose?: 0 | 1 | 2; log?: (message: string) => void } = {}) {
    this.verbose = options.verbose ?? 1;
    this.log = options.log ?? ((m) => console.log(m));
  }

  private memoryText(context: TrainerContext): string {
    const { bytes, byKind } = context.progress.memory;
    const parts = Object.entries(byKind ?? {})
      .filter(([, v]) => v !== undefined && v > 0)
      .map(([k, v]) => `${k} ${formatMemory(v!)}`);
    return `${formatMemory(bytes)}${parts.length > 0 ? ` (${parts.join(', ')})` : ''}`;
  }

  onTrainBegin(context: TrainerContext): void {
    if (this.verbose >= 1 && context.progress.activeBlock !== undefined) {
      this.log(
        `BAdam: starting on block ${context.progress.activeBlock}; holding ${this.memoryText(context)}`,
      );
    }
  }

  onBlockSwitch(context: TrainerContext, change: { from: number; to: number }): void {
    if (this.verbose >= 1) {
      this.log(
        `BAdam: step ${context.progress.step}: block ${change.from} -> ${change.to}; holding ${this.memoryText(context)}`,
      );
    }
  }

  onStepEnd(context: TrainerContext): void {
    if (this.verbose >= 2) {
      this.log(
        `BAdam: step ${context.progress.step}, block ${context.progress.activeBlock ?? '-'}: holding ${this.memoryText(context)}`,
      );
    }
  }
}
