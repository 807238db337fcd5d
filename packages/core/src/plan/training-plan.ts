import type { BlockOptimizerOptions } from '../optimizer/block-optimizer.js';
import type { LogFn } from '../optimizer/log.js';
import type {
  OptimizerDescription,
  ResolvedOptimizerDescription,
} from '../optimizer/optimizer-description.js';
import type { UpdateMaskOptions } from '../optimizer/update-mask-options.js';
import type { NamedParameterInfo } from '../parameters.js';
import type { BlockPartition } from '../partition/block-partition.js';
import type { FineTuningMethod } from './fine-tuning-methods.js';

/** Which parameters a model offers to BAdam's partition beyond its layers, and what it trains in every block. */
export interface ModelPartition {
  /** The embedding is a block (BAdam), or trained (the ratio). Default false. */
  readonly includeEmbedding?: boolean;
  /**
   * The final norm, `lm_head` and other non-layer parameters form the last block (BAdam), or `lm_head` is
   * trained (the ratio). Default false.
   */
  readonly includeLmHead?: boolean;
  /** Prefixes trained in every block and by LoRA too (e.g. a classification head). Default none. */
  readonly activeModules?: readonly string[];
}

/** A BlockOptimizer's options, all but the parameters: what a backend passes to its BlockOptimizer. */
export type PlannedBlockOptimizerOptions = Omit<
  BlockOptimizerOptions<OptimizerDescription>,
  'namedParameters'
>;

/** A plan that trains with a BlockOptimizer: BAdam, and full Adam and LoRA as one block that never switches. */
export interface BlockOptimizerPlan {
  readonly kind: 'block';
  /** The BlockOptimizer's options; a backend adds its parameters (`namedParameters`). */
  readonly options: PlannedBlockOptimizerOptions;
}

/** A plan that trains with a BlockOptimizerRatio: masked sparse Adam on every trained parameter. */
export interface RatioOptimizerPlan {
  readonly kind: 'ratio';
  /** The update masks (`@badam/ratio`'s `UpdateMaskSchedule` options). */
  readonly masks: UpdateMaskOptions;
  /** 0: warnings only; 1: a summary at construction. */
  readonly verbose: 0 | 1;
}

/**
 * The parameters a plan trains together: per eligible block for a BlockOptimizer (the block's trainable
 * parameters, then the active modules), one group for the ratio (all its parameters take gradients at every
 * step). What the memory estimate and `trainable_parameters` count.
 */
export interface PlannedPartition {
  /** Parameter names trained together, in the order they are visited; each group in model order. */
  readonly groups: readonly (readonly string[])[];
  /** Parameters the plan never trains. */
  readonly frozenNames: readonly string[];
  /** The BlockOptimizer's partition (`kind: 'block'` plans), as the optimizer will build it. */
  readonly blocks?: BlockPartition;
}

/**
 * A run's training, decided once and backend-neutral: the method, the parameters, the base optimizer, the
 * step's accumulation and clipping, the seed, the optimizer (BlockOptimizer options or the ratio's masks)
 * and the partition it produces. Made by {@link planTraining}; a backend's {@link TrainerBackendFactory}
 * turns it into a trainer backend, and nothing else decides what trains.
 */
export interface TrainingPlan {
  readonly method: FineTuningMethod;
  /** The method's name in logs and tables (`BAdam`, `full Adam`, `LoRA`, `BAdam ratio`). */
  readonly label: string;
  /** The model's parameters as planned (LoRA adapters included for `lora`), in model order. */
  readonly parameters: readonly NamedParameterInfo[];
  /** The base optimizer, validated with its defaults filled in; `learningRate` is the first step's. */
  readonly baseOptimizer: ResolvedOptimizerDescription & { readonly learningRate: number };
  /** Micro-batches per optimizer step. */
  readonly gradientAccumulationSteps: number;
  /** Global L2 norm the mean gradient of each update is clipped to; undefined: no clipping. */
  readonly clipGradNorm: number | undefined;
  /** Seed of everything random in the optimizer (block order, scatter permutations). */
  readonly seed: number;
  /** Where the optimizer's messages go. */
  readonly logFn: LogFn;
  /** The optimizer and its options. */
  readonly optimizer: BlockOptimizerPlan | RatioOptimizerPlan;
  /** What the plan trains together. */
  readonly partition: PlannedPartition;
}
