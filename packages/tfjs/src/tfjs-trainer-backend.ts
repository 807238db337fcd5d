import {
  type BackendMemoryReport,
  BadamOptionError,
  type EvaluationResult,
  type MicroBatchResult,
  type OptimizerStepResult,
  type TrainerBackend,
  type TrainingSnapshot,
} from '@badam/core';
import type * as tf from '@tensorflow/tfjs-core';
import { BlockOptimizer } from './block-optimizer.js';
import { BlockOptimizerRatio } from './block-optimizer-ratio.js';
import type { NamedVariable } from './named-variables.js';
import { blockStrategy } from './trainer/block-strategy.js';
import { FullStrategy } from './trainer/full-strategy.js';
import { RatioStrategy } from './trainer/ratio-strategy.js';
import type { TfjsTrainingTask } from './trainer/tfjs-training-task.js';

export type { TfjsTrainingTask } from './trainer/tfjs-training-task.js';

/** Options of {@link TfjsTrainerBackend}. */
export interface TfjsTrainerBackendOptions<TBatch> {
  task: TfjsTrainingTask<TBatch>;
  /**
   * BAdam's BlockOptimizer, BlockOptimizerRatio, or any tf.Optimizer to train the `trainable` variables
   * of `namedParameters` in full (the baseline).
   */
  optimizer: BlockOptimizer | BlockOptimizerRatio | tf.Optimizer;
  /** The model's `[name, tf.Variable]` pairs. Needed for a plain tf.Optimizer and BlockOptimizerRatio; a BlockOptimizer knows its own. */
  namedParameters?: readonly NamedVariable[];
  /** Micro-batches per step for BlockOptimizerRatio and plain optimizers (BlockOptimizer has its own option). Default 1. */
  gradientAccumulationSteps?: number;
  /** Global-norm clipping for BlockOptimizerRatio and plain optimizers (BlockOptimizer has its own option). */
  clipGradNorm?: number;
  /** The line the trainer logs for the run. Default: what trains how, e.g. `BAdam on tfjs (wasm): 8 blocks, ...`. */
  description?: string;
  /**
   * The run's peak as a tracker inside each pass sees it (e.g. {@link trackPeakMemory}'s): the memory report's
   * `peakBytes`, so that the progress line's peak is the one the results record. Default: the largest
   * `tf.memory()` seen between steps, which misses the activations a pass holds.
   */
  peakBytes?: () => number;
}

/**
 * Connects a tfjs model and optimizer to core's `TrainerBackend`, so `Trainer` runs BAdam, its ratio
 * variant, full fine-tuning or LoRA (a plain optimizer over the adapter variables) with the same loop.
 * Each optimizer kind is a small strategy: BlockOptimizer runs on core's `BlockTrainer` (accumulation,
 * clipping, checkpoint format all core's); BlockOptimizerRatio and plain optimizers take dense gradients
 * counted and scaled by core's `GradientAccumulation`. Snapshots hold every weight and the optimizer's
 * state under PyTorch's names, so a checkpoint resumes exactly in a new process, or on another backend.
 *
 * @example
 * ```ts
 * const backend = new TfjsTrainerBackend({ task: { loss: (b) => model.loss(b), tokens: (b) => b.size }, optimizer });
 * await new Trainer({ backend, trainData, maxSteps: 100 }).train();
 * ```
 */
export class TfjsTrainerBackend<TBatch> implements TrainerBackend<TBatch> {
  private readonly strategy: TrainerBackend<TBatch>;
  private readonly peakBytes: (() => number) | undefined;

  constructor(options: TfjsTrainerBackendOptions<TBatch>) {
    this.peakBytes = options.peakBytes;
    const { task, optimizer } = options;
    if (typeof task?.loss !== 'function' || typeof task.tokens !== 'function') {
      throw new BadamOptionError('task', task, 'an object with loss(batch) and tokens(batch)');
    }
    // Not `instanceof`: tf.Optimizer's duck-typed Symbol.hasInstance would accept any optimizer.
    if (Object.prototype.isPrototypeOf.call(BlockOptimizer.prototype, optimizer)) {
      this.strategy = blockStrategy(optimizer as BlockOptimizer, task, options.description);
      return;
    }
    if (options.namedParameters === undefined) {
      throw new BadamOptionError(
        'namedParameters',
        undefined,
        'the model variables when the optimizer is not a BlockOptimizer',
      );
    }
    const dense = {
      gradientAccumulationSteps: options.gradientAccumulationSteps,
      clipGradNorm: options.clipGradNorm,
    };
    this.strategy = Object.prototype.isPrototypeOf.call(BlockOptimizerRatio.prototype, optimizer)
      ? new RatioStrategy(optimizer as BlockOptimizerRatio, options.namedParameters, task, {
          ...dense,
          description: options.description,
        })
      : new FullStrategy(optimizer as tf.Optimizer, options.namedParameters, task, {
          ...dense,
          description: options.description,
        });
  }

  get description(): string {
    return this.strategy.description;
  }

  get gradientAccumulationSteps(): number {
    return this.strategy.gradientAccumulationSteps;
  }

  get activeBlock(): number | undefined {
    return this.strategy.activeBlock;
  }

  get learningRate(): number {
    return this.strategy.learningRate;
  }

  set learningRate(lr: number) {
    this.strategy.learningRate = lr;
  }

  forwardBackward(batch: TBatch): MicroBatchResult | Promise<MicroBatchResult> {
    return this.strategy.forwardBackward(batch);
  }

  step(): OptimizerStepResult | Promise<OptimizerStepResult> {
    return this.strategy.step();
  }

  discardGradients(): void | Promise<void> {
    return this.strategy.discardGradients();
  }

  evaluate(batch: TBatch): EvaluationResult | Promise<EvaluationResult> {
    return this.strategy.evaluate(batch);
  }

  memory(): BackendMemoryReport {
    const report = this.strategy.memory();
    if (this.peakBytes === undefined) return report;
    return { ...report, peakBytes: Math.max(report.peakBytes ?? 0, this.peakBytes()) };
  }

  snapshot(): Promise<TrainingSnapshot> {
    return this.strategy.snapshot();
  }

  restore(snapshot: TrainingSnapshot): Promise<void> {
    return this.strategy.restore(snapshot);
  }
}
