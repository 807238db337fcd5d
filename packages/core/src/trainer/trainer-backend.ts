import type { NamedArray } from '../named-array.js';
import type { BackendMemoryReport } from '../optimizer/block-backend.js';

/** What one forward + backward pass on a micro-batch produced. */
export interface MicroBatchResult {
  /** The micro-batch's mean loss. */
  readonly loss: number;
  /** Tokens (or examples) the micro-batch contained, for throughput. */
  readonly tokens: number;
}

/** What one call of {@link TrainerBackend.step} did. */
export interface OptimizerStepResult {
  /** False while gradients are still being accumulated. */
  readonly applied: boolean;
  /** True when BAdam switched to another block after this update. */
  readonly switched?: boolean;
  /** The block the update was applied to, and the one active now (BAdam only). */
  readonly updatedBlock?: number;
  readonly activeBlock?: number;
  /** Global gradient norm before clipping, when the backend computed it. */
  readonly gradNorm?: number;
}

/** Loss and metrics on one evaluation batch. */
export interface EvaluationResult {
  readonly loss: number;
  /** Weight of this batch in the averages (tokens, or examples). */
  readonly weight: number;
  /** Task metrics (e.g. accuracy), averaged with `weight`. */
  readonly metrics?: Readonly<Record<string, number>>;
}

/** Everything needed to continue a run exactly: the weights and the optimizer's state. */
export interface TrainingSnapshot {
  /** Every model weight. */
  readonly weights: readonly NamedArray[];
  /** The optimizer: plain-data state (BAdam's block order, position, step...) and its tensors (moments). */
  readonly optimizer: { readonly state: unknown; readonly tensors: readonly NamedArray[] };
}

/**
 * What the {@link Trainer} drives: a model and its optimizer on one tensor library. `@badam/tfjs` implements
 * it over any of its optimizers (BlockOptimizer, BlockOptimizerRatio, a full-model tf.Optimizer); the
 * training loop never changes when the backend does.
 *
 * Per micro-batch the trainer calls `forwardBackward` (gradients now pending), then either `step` (count
 * the micro-batch; every `gradientAccumulationSteps`-th call updates) or `discardGradients` (a skipped
 * micro-batch, e.g. a NaN loss: everything pending for the current step is dropped).
 */
export interface TrainerBackend<TBatch> {
  /** One line saying what trains how, for logs (e.g. `BAdam: 8 blocks, K = 50, AdamW`). */
  readonly description: string;
  /** Micro-batches per optimizer step (the optimizer's gradient accumulation). */
  readonly gradientAccumulationSteps: number;
  /** BAdam's active block now (undefined for optimizers without blocks). */
  readonly activeBlock?: number | undefined;
  /** The learning rate the next update uses; the trainer sets it from its schedule. */
  learningRate: number;
  forwardBackward(batch: TBatch): MicroBatchResult | Promise<MicroBatchResult>;
  step(): OptimizerStepResult | Promise<OptimizerStepResult>;
  discardGradients(): void | Promise<void>;
  evaluate(batch: TBatch): EvaluationResult | Promise<EvaluationResult>;
  memory(): BackendMemoryReport;
  snapshot(): Promise<TrainingSnapshot>;
  restore(snapshot: TrainingSnapshot): Promise<void>;
}
