import { BlockOptimizer, type BlockOptimizerOptions } from '../optimizer/block-optimizer.js';
import type { OptimizerDescription } from '../optimizer/optimizer-description.js';
import { BlockTrainer } from '../trainer/block-trainer.js';
import type { EvaluationResult } from '../trainer/trainer-backend.js';
import { ReferenceBackend, type ReferenceParameter } from './reference-backend.js';

/** A model written in plain JavaScript: its loss and the gradients of the parameters asked for. */
export interface ReferenceModel<TBatch> {
  /**
   * Loss of `batch` given the current `weights`, and the gradients of the parameters in `trainable` only
   * (BAdam's backward stops at the active block). Returns gradients keyed by parameter name.
   */
  lossAndGradients(
    batch: TBatch,
    weights: (name: string) => Float32Array,
    trainable: ReadonlySet<string>,
  ): { loss: number; gradients: ReadonlyMap<string, ArrayLike<number>> };
  /** Tokens or examples in the batch. */
  size(batch: TBatch): number;
  /** Task metrics for evaluation (averaged with the batch size). */
  metrics?(batch: TBatch, weights: (name: string) => Float32Array): Record<string, number>;
}

/**
 * Core's {@link BlockTrainer} for models written in plain JavaScript, trained with BAdam on the
 * {@link ReferenceBackend}: the full Trainer (logging, checkpoints, exact resume) without a tensor
 * library. Used by the tests of core and of `@badam/callbacks`, and for small models in any JS runtime.
 *
 * @example
 * ```ts
 * const backend = new ReferenceTrainerBackend(parameters, model, { learningRate: 0.05, switchBlockEvery: 3 });
 * await new Trainer({ backend, trainData, maxSteps: 30 }).train();
 * ```
 */
export class ReferenceTrainerBackend<TBatch> extends BlockTrainer<
  TBatch,
  OptimizerDescription,
  ArrayLike<number>
> {
  /** The backend holding the weights, masters, gradients and moments. */
  readonly backend: ReferenceBackend;
  declare readonly optimizer: BlockOptimizer<OptimizerDescription, ReferenceBackend>;

  constructor(
    parameters: readonly ReferenceParameter[],
    model: ReferenceModel<TBatch>,
    options: Partial<Omit<BlockOptimizerOptions<OptimizerDescription>, 'namedParameters'>> = {},
  ) {
    const backend = new ReferenceBackend(parameters);
    const weight = (name: string) => backend.weight(name);
    const optimizer = new BlockOptimizer(
      { baseOptimizer: {}, learningRate: 1e-3, verbose: 0, ...options, namedParameters: parameters },
      backend,
    );
    super(
      optimizer,
      {
        lossAndGradients(batch, trainable) {
          const { loss, gradients } = model.lossAndGradients(batch, weight, new Set(trainable));
          return { loss, tokens: model.size(batch), gradients };
        },
        evaluate(batch): EvaluationResult {
          const { loss } = model.lossAndGradients(batch, weight, new Set());
          const metrics = model.metrics?.(batch, weight);
          return { loss, weight: model.size(batch), ...(metrics ? { metrics } : {}) };
        },
      },
      {
        description: `BAdam (reference backend): ${optimizer.summary}`,
      },
    );
    this.backend = backend;
  }
}
