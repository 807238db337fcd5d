import { BadamOptionError } from '../errors.js';
import type { NamedArray } from '../named-array.js';
import type { AdamWConfig } from '../optimizer/adamw.js';
import {
  BlockOptimizer,
  type BlockOptimizerOptions,
  type BlockOptimizerState,
} from '../optimizer/block-optimizer.js';
import type {
  EvaluationResult,
  MicroBatchResult,
  OptimizerStepResult,
  TrainerBackend,
  TrainingSnapshot,
} from '../trainer/trainer-backend.js';
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
 * Core's {@link TrainerBackend} for models written in plain JavaScript, trained with BAdam on the
 * {@link ReferenceBackend}: the full Trainer (logging, checkpoints, exact resume) without a tensor
 * library. Used by the tests of core and of `@badam/callbacks`, and for small models in any JS runtime.
 */
export class ReferenceTrainerBackend<TBatch> implements TrainerBackend<TBatch> {
  readonly description: string;
  readonly gradientAccumulationSteps: number;
  readonly backend: ReferenceBackend;
  readonly optimizer: BlockOptimizer<AdamWConfig, ReferenceBackend>;
  private readonly model: ReferenceModel<TBatch>;
  private readonly names: readonly string[];

  constructor(
    parameters: readonly ReferenceParameter[],
    model: ReferenceModel<TBatch>,
    options: Partial<Omit<BlockOptimizerOptions<AdamWConfig>, 'namedParameters'>> = {},
  ) {
    this.backend = new ReferenceBackend(parameters);
    this.names = parameters.map((p) => p.name);
    this.model = model;
    this.optimizer = new BlockOptimizer(
      { baseOptimizer: {}, learningRate: 1e-3, verbose: 0, ...options, namedParameters: parameters },
      this.backend,
    );
    this.gradientAccumulationSteps = this.optimizer.gradientAccumulationSteps;
    this.description = `BAdam (reference backend): ${this.optimizer.partition.blocks.length} blocks, switch every ${this.optimizer.switchBlockEvery} steps (${this.optimizer.switchMode})`;
  }

  get activeBlock(): number {
    return this.optimizer.activeBlock.index;
  }

  get learningRate(): number {
    return this.optimizer.lr;
  }

  set learningRate(lr: number) {
    this.optimizer.lr = lr;
  }

  private readonly weight = (name: string) => this.backend.weight(name);

  forwardBackward(batch: TBatch): MicroBatchResult {
    const trainable = new Set(this.optimizer.trainableNames);
    const { loss, gradients } = this.model.lossAndGradients(batch, this.weight, trainable);
    for (const [name, g] of gradients) this.backend.accumulateGradient(name, g);
    return { loss, tokens: this.model.size(batch) };
  }

  step(): OptimizerStepResult {
    return this.optimizer.step();
  }

  discardGradients(): void {
    this.optimizer.discardPendingGradients();
  }

  evaluate(batch: TBatch): EvaluationResult {
    const { loss } = this.model.lossAndGradients(batch, this.weight, new Set());
    const metrics = this.model.metrics?.(batch, this.weight);
    return { loss, weight: this.model.size(batch), ...(metrics ? { metrics } : {}) };
  }

  memory() {
    return this.backend.memory();
  }

  async snapshot(): Promise<TrainingSnapshot> {
    const weights: NamedArray[] = this.names.map((name) => ({
      name,
      dtype: 'float32',
      shape: this.backend.parameterInfo(name).shape,
      data: this.backend.weight(name),
    }));
    return {
      weights,
      optimizer: { state: this.optimizer.state(), tensors: this.backend.optimizerTensors() },
    };
  }

  async restore(snapshot: TrainingSnapshot): Promise<void> {
    const saved = new Map(snapshot.weights.map((w) => [w.name, w]));
    for (const name of this.names) {
      const w = saved.get(name);
      if (w === undefined)
        throw new BadamOptionError('snapshot weights', name, 'a saved tensor for every parameter');
      this.backend.setWeight(name, w.data as Float32Array);
    }
    this.optimizer.loadState(snapshot.optimizer.state as BlockOptimizerState);
    this.backend.loadOptimizerTensors(snapshot.optimizer.tensors);
  }
}
