import type { NamedArray } from '../named-array.js';
import type { NamedParameterInfo } from '../parameters.js';

/**
 * The contract between core and a backend. Core decides *what* is trained *when*; a backend owns the
 * tensors: weight storage, gradients of the trainable parameters, the fp32 master copies and optimizer
 * state of the active block, the update itself, and freeing all of it when the block leaves.
 *
 * The calls core makes, in order, for a run with K = 2 and gradient accumulation 1:
 *
 * ```text
 * activateBlock(b0)  applyUpdate(step 1)  applyUpdate(step 2)  deactivateBlock(b0)
 * activateBlock(b1)  applyUpdate(step 1)  ...
 * ```
 *
 * Between updates the backend sums the gradients of the active block's parameters however its tensor
 * library computes them. Core counts the micro-batches and, when clipping is on, asks for the sum's squared
 * norm ({@link BlockBackend.gradientSumOfSquares}) and folds the clip coefficient into
 * `update.gradientScale`: a backend never clips or averages by itself.
 */
export interface BlockBackend<TBaseOptimizer = unknown> {
  /**
   * Make `activation.parameters` trainable: create an fp32 master copy of each (where weights are stored
   * in 16-bit), zeroed gradient accumulators, and fresh optimizer state — Adam's step count, hence its
   * bias correction, restarts with every activation.
   */
  activateBlock(activation: BlockActivation<TBaseOptimizer>): void;
  /**
   * Free everything `activateBlock` created for the block (masters, gradients, optimizer state) so the
   * memory is really returned, and make its parameters frozen again.
   */
  deactivateBlock(activation: BlockActivation<TBaseOptimizer>): void;
  /**
   * One optimizer step of the active block: gradients (summed over the step's micro-batches, times
   * `update.gradientScale`) to fp32, the base optimizer updates the masters at `update.lr`, masters are
   * written back to the weights (rounded to the weight dtype), gradients are cleared.
   */
  applyUpdate(update: BlockUpdate): void;
  /** Drop the gradients accumulated since the last update (a skipped micro-batch, e.g. a NaN loss). */
  discardGradients(): void;
  /**
   * The squared global L2 norm of the gradients summed since the last update (unscaled: before
   * `gradientScale`), over every trainable parameter. Core asks for it when gradient clipping is on.
   */
  gradientSumOfSquares(): number;
  /** Bytes the backend holds now, by kind, as its allocator or tensor library measures them. */
  memory(): BackendMemoryReport;
}

/** A parameter as the backend sees it while its block is active. */
export interface TrainableParameter extends NamedParameterInfo {
  /** Whether AdamW's decoupled weight decay applies (false for biases and normalisation weights). */
  readonly weightDecay: boolean;
  /** True for a parameter of `activeModules`: trainable in every block. */
  readonly activeModule: boolean;
}

/** What `activateBlock` and `deactivateBlock` receive. */
export interface BlockActivation<TBaseOptimizer = unknown> {
  /** Index of the block in the partition. */
  readonly blockIndex: number;
  /** The block's prefixes (for logs). */
  readonly prefixes: readonly string[];
  /** The parameters trained while this block is active, in model order (block members, then active modules). */
  readonly parameters: readonly TrainableParameter[];
  /** The base optimizer as the user passed it; the backend creates fresh state from it on each activation. */
  readonly baseOptimizer: TBaseOptimizer;
}

/** What `applyUpdate` receives. */
export interface BlockUpdate {
  /** Index of the active block. */
  readonly blockIndex: number;
  /** Learning rate of this step (set by the user or a schedule on the BlockOptimizer). */
  readonly lr: number;
  /** 1-based step count within the current activation (Adam's `t` for bias correction). */
  readonly stepInBlock: number;
  /** 1-based optimizer step count of the whole run. */
  readonly globalStep: number;
  /**
   * Factor for the summed micro-batch gradients: 1 / gradientAccumulationSteps, so the update sees their
   * mean, times the clip coefficient when global-norm clipping applies. Multiply the gradients by it once.
   */
  readonly gradientScale: number;
}

/**
 * A {@link BlockBackend} that core's {@link BlockTrainer} can train and checkpoint: it also takes the
 * gradients a model computed, and reads and writes weights and the active block's optimizer tensors as
 * plain arrays. A new backend implements this (tensor code only) and gets the trainer, gradient
 * accumulation, clipping, checkpoints and exact resume from core.
 *
 * Optimizer tensors use the names of {@link OPTIMIZER_STATE_KEYS} (`<param>.exp_avg`,
 * `<param>.exp_avg_sq`, `<param>.step`, `<param>.master`), so a checkpoint written on one backend resumes
 * on another.
 */
export interface CheckpointableBlockBackend<TBaseOptimizer = unknown, TGradient = unknown>
  extends BlockBackend<TBaseOptimizer> {
  /** Adds gradients (by parameter name; trainable parameters only) to the ones summed for the next update. */
  accumulateGradients(gradients: ReadonlyMap<string, TGradient>): void;
  /** Every weight, by parameter name, in model order (fp32 values). */
  readWeights(): readonly NamedArray[] | Promise<readonly NamedArray[]>;
  /** Overwrites every weight (fp32 values, one per parameter, already checked for name and shape). */
  writeWeights(weights: ReadonlyMap<string, NamedArray>): void | Promise<void>;
  /** The active block's optimizer state (moments, step, masters) as named arrays. */
  exportOptimizerTensors(): readonly NamedArray[] | Promise<readonly NamedArray[]>;
  /**
   * Restores {@link exportOptimizerTensors} into the active block, which core has just activated afresh;
   * `stepInBlock` is the step count core restored, for the backend to check the tensors against.
   */
  importOptimizerTensors(tensors: readonly NamedArray[], stepInBlock: number): void | Promise<void>;
}

/** Kinds of memory a backend accounts for. */
export type MemoryKind =
  | 'weights'
  | 'masters'
  | 'gradients'
  | 'optimizerState'
  | 'activations'
  | 'workspace'
  | 'other';

/** A backend's measurement of the memory it holds. */
export interface BackendMemoryReport {
  /** Bytes held now. */
  readonly bytes: number;
  /** Most bytes held at once since the backend was created (or its peak counter was reset). */
  readonly peakBytes?: number;
  /** Bytes by kind, where the backend can tell them apart. */
  readonly byKind?: Partial<Record<MemoryKind, number>>;
  /** Where the numbers come from, e.g. `'tf.memory()'` or `'cuda caching allocator'`. */
  readonly source: string;
}
