import type { TrainerCallback, TrainerContext } from '@badam/core';

/** Options of a {@link LossSpikeMonitor}. */
export interface LossSpikeMonitorOptions {
  /** Warn when a step's loss exceeds its running level by this factor. Default 2. */
  readonly factor?: number;
  /** ... and by at least this much (nats), so that a small loss doubling is not news. Default 1. */
  readonly margin?: number;
  /** Steps before the running level is trusted. Default 1: the first step's loss is where the run starts. */
  readonly warmupSteps?: number;
  /** Warn when the gradient norm is exactly 0 for this many steps in a row at a positive loss. Default 3. */
  readonly zeroGradientSteps?: number;
  /** Weight of each new step in the running level (an exponential moving average). Default 0.1. */
  readonly smoothing?: number;
  readonly warn?: (message: string) => void;
}

/**
 * Warns when training diverges while the loss stays finite, which no NaN guard sees: a step loss far above
 * its running level, or gradients that are exactly zero step after step at a positive loss (too high a
 * learning rate saturates a language model into a uniform one: loss ln(vocabulary), nothing left to learn
 * from). It warns once per excursion and again only after the loss came back down; it never stops a run.
 * Its running level is kept in checkpoints, so a resumed run watches as the straight one would.
 */
export class LossSpikeMonitor implements TrainerCallback {
  readonly stateKey = 'loss_spike_monitor';
  private readonly factor: number;
  private readonly margin: number;
  private readonly warmupSteps: number;
  private readonly smoothing: number;
  private readonly warn: (message: string) => void;
  private level = Number.NaN;
  private steps = 0;
  private spiking = false;
  private readonly zeroGradientSteps: number;
  private zeroGradients = 0;
  /** Warnings given so far. */
  warnings = 0;

  constructor(options: LossSpikeMonitorOptions = {}) {
    this.factor = options.factor ?? 2;
    this.margin = options.margin ?? 1;
    this.warmupSteps = options.warmupSteps ?? 1;
    this.zeroGradientSteps = options.zeroGradientSteps ?? 3;
    this.smoothing = options.smoothing ?? 0.1;
    if (!(this.factor > 1)) throw new RangeError(`factor must be > 1, got ${options.factor}`);
    if (!(this.smoothing > 0 && this.smoothing <= 1))
      throw new RangeError(`smoothing must be in (0, 1], got ${options.smoothing}`);
    this.warn = options.warn ?? ((m) => console.warn(m));
  }

  onStepEnd(context: TrainerContext): void {
    const { loss, step, lr, gradNorm } = context.progress;
    if (!Number.isFinite(loss)) return; // the NaN/Inf guard's case
    this.zeroGradients = gradNorm === 0 && loss > 0 ? this.zeroGradients + 1 : 0;
    if (this.zeroGradients === this.zeroGradientSteps) {
      this.warnings += 1;
      this.warn(
        `BAdam: gradient norm 0 for ${this.zeroGradients} steps in a row at loss ${loss.toFixed(4)} (step ${step}): training has stalled; a saturated model (learning rate ${lr.toPrecision(3)} too high?) learns nothing more`,
      );
    }
    const trusted = this.steps >= this.warmupSteps;
    const high = trusted && loss > this.factor * this.level && loss - this.level > this.margin;
    if (high && !this.spiking) {
      this.warnings += 1;
      this.warn(
        `BAdam: loss ${loss.toFixed(4)} at step ${step} is ${(loss / this.level).toFixed(1)}x its running level ${this.level.toFixed(4)}: training may be diverging (learning rate ${lr.toPrecision(3)} too high?)`,
      );
    }
    this.spiking = high || (this.spiking && loss > (1 + (this.factor - 1) / 2) * this.level);
    // A spike does not move the level: it is what the loss should come back to.
    if (!high) {
      this.level = Number.isNaN(this.level) ? loss : this.level + this.smoothing * (loss - this.level);
      this.steps += 1;
    }
  }

  saveState(): unknown {
    return { level: this.level, steps: this.steps, spiking: this.spiking, zeroGradients: this.zeroGradients };
  }

  loadState(state: unknown): void {
    const s = state as { level?: unknown; steps?: unknown; spiking?: unknown } | null;
    if (typeof s?.level === 'number' && typeof s.steps === 'number') {
      this.level = s.level;
      this.steps = s.steps;
      this.spiking = s.spiking === true;
      this.zeroGradients =
        typeof (s as { zeroGradients?: unknown }).zeroGradients === 'number'
          ? (s as { zeroGradients: number }).zeroGradients
          : 0;
    }
  }
}
