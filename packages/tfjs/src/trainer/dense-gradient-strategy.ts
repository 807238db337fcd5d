import {
  type BackendMemoryReport,
  type EvaluationResult,
  GradientAccumulation,
  type MicroBatchResult,
  type NamedArray,
  type OptimizerStepResult,
  type TrainerBackend,
  type TrainingSnapshot,
} from '@badam/core';
import * as tf from '@tensorflow/tfjs-core';
import { sumOfSquares } from '../global-norm.js';
import { assignWeights, variablesToArrays } from '../named-arrays.js';
import type { NamedVariable } from '../named-variables.js';
import type { ParameterVariable } from '../optimizer-state.js';
import { evaluateTask, lossAndGradients, type TfjsTrainingTask } from './tfjs-training-task.js';

/** Options of the dense-gradient strategies. */
export interface DenseStrategyOptions {
  readonly gradientAccumulationSteps?: number | undefined;
  readonly clipGradNorm?: number | undefined;
  /** The trainer's line for the run; default: what trains how. */
  readonly description?: string | undefined;
}

/**
 * What the ratio and full-model strategies share: dense gradients of every trained variable summed over
 * the micro-batches, counted and scaled (mean, clip coefficient) by core's {@link GradientAccumulation}, and
 * handed to an optimizer that updates everything it is given.
 */
export abstract class DenseGradientStrategy<TBatch> implements TrainerBackend<TBatch> {
  abstract readonly description: string;
  abstract learningRate: number;
  readonly gradientAccumulationSteps: number;
  protected readonly accumulation: GradientAccumulation;
  private readonly pending = new Map<string, tf.Tensor>();

  constructor(
    protected readonly named: readonly NamedVariable[],
    protected readonly task: TfjsTrainingTask<TBatch>,
    options: DenseStrategyOptions,
  ) {
    this.accumulation = new GradientAccumulation({
      steps: options.gradientAccumulationSteps ?? 1,
      maxGradNorm: options.clipGradNorm,
    });
    this.gradientAccumulationSteps = this.accumulation.steps;
  }

  /** The parameters the optimizer trains, in a fixed order. */
  protected abstract trained(): readonly ParameterVariable[];
  /** One update from the scaled gradients, keyed by tf variable name (the caller disposes them). */
  protected abstract apply(gradients: tf.NamedTensorMap): void;
  /** The optimizer's part of a snapshot: plain-data state and tensors. */
  protected abstract optimizerSnapshot(): Promise<TrainingSnapshot['optimizer']>;
  /** Restores {@link optimizerSnapshot} (the weights are back already). */
  protected abstract restoreOptimizer(state: unknown, tensors: readonly NamedArray[]): Promise<void>;
  abstract memory(): BackendMemoryReport;

  async snapshot(): Promise<TrainingSnapshot> {
    return { weights: variablesToArrays(this.named), optimizer: await this.optimizerSnapshot() };
  }

  async restore(snapshot: TrainingSnapshot): Promise<void> {
    assignWeights(this.named, snapshot.weights);
    this.discardGradients();
    await this.restoreOptimizer(snapshot.optimizer.state, snapshot.optimizer.tensors);
  }

  forwardBackward(batch: TBatch): MicroBatchResult {
    const { loss, tokens, gradients } = lossAndGradients(this.task, batch, this.trained());
    for (const [name, g] of gradients) {
      const previous = this.pending.get(name);
      this.pending.set(name, previous === undefined ? g : tf.add(previous, g));
      if (previous !== undefined) {
        previous.dispose();
        g.dispose();
      }
    }
    return { loss, tokens };
  }

  step(): OptimizerStepResult {
    if (!this.accumulation.count()) return { applied: false };
    const { gradientScale, gradNorm } = this.accumulation.updateScale(() =>
      sumOfSquares(this.pending.values()),
    );
    const variables = new Map(this.trained().map((p) => [p.name, p.variable.name]));
    const scaled: tf.NamedTensorMap = {};
    for (const [name, g] of this.pending)
      scaled[variables.get(name)!] = gradientScale === 1 ? g : tf.mul(g, gradientScale);
    try {
      this.apply(scaled);
    } finally {
      if (gradientScale !== 1) tf.dispose(scaled);
      this.discardGradients();
    }
    return { applied: true, ...(gradNorm !== undefined ? { gradNorm } : {}) };
  }

  discardGradients(): void {
    for (const g of this.pending.values()) g.dispose();
    this.pending.clear();
    this.accumulation.reset();
  }

  evaluate(batch: TBatch): EvaluationResult {
    return evaluateTask(this.task, batch);
  }

  /** Bytes of the gradients summed for the next update. */
  protected pendingBytes(): number {
    let bytes = 0;
    for (const g of this.pending.values()) bytes += 4 * g.size;
    return bytes;
  }
}
