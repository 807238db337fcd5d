import type { TrainingMethod } from '../memory/estimate-memory.js';

/** The fine-tuning methods every backend and runner offers: BAdam, full Adam, LoRA and BAdam's ratio variant. */
export const FINE_TUNING_METHODS = ['block', 'full', 'lora', 'sparse'] as const;

/** A fine-tuning method. */
export type FineTuningMethod = (typeof FINE_TUNING_METHODS)[number];

/** One row of the method table. */
export interface FineTuningMethodSpec {
  /** What the method is called in logs and tables (`BAdam`, `full Adam`). */
  readonly label: string;
  /** The method in core's memory model. */
  readonly memoryMethod: TrainingMethod;
  /** Whether the model needs LoRA adapters before it is planned. */
  readonly needsLora: boolean;
  /**
   * The optimizer it trains with: a BlockOptimizer (BAdam; full Adam and LoRA are BAdam with one block
   * that never switches) or a BlockOptimizerRatio.
   */
  readonly optimizer: 'block' | 'ratio';
}

/**
 * The method table: each method's label, memory-model method, whether it needs LoRA adapters, and its
 * optimizer. Code looks a method up here instead of switching on it.
 *
 * @example
 * ```ts
 * FINE_TUNING_METHOD_SPECS.full.label; // 'full Adam'
 * ```
 */
export const FINE_TUNING_METHOD_SPECS: Readonly<Record<FineTuningMethod, FineTuningMethodSpec>> = {
  block: { label: 'BAdam', memoryMethod: 'badam', needsLora: false, optimizer: 'block' },
  full: { label: 'full Adam', memoryMethod: 'adam', needsLora: false, optimizer: 'block' },
  lora: { label: 'LoRA', memoryMethod: 'lora', needsLora: true, optimizer: 'block' },
  sparse: { label: 'BAdam ratio', memoryMethod: 'ratio', needsLora: false, optimizer: 'ratio' },
};
