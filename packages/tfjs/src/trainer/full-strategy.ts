import {
  type BackendMemoryReport,
  BadamStateError,
  type NamedArray,
  requireNumber,
  type TrainingSnapshot,
} from '@badam/core';
import * as tf from '@tensorflow/tfjs-core';
import { learningRateOf, setLearningRate } from '../base-optimizer.js';
import type { NamedVariable } from '../named-variables.js';
import { exportOptimizerState, importOptimizerState, type ParameterVariable } from '../optimizer-state.js';
import { DenseGradientStrategy, type DenseStrategyOptions } from './dense-gradient-strategy.js';
import type { TfjsTrainingTask } from './tfjs-training-task.js';

/** Saved state of a plain tf.Optimizer: its class and the updates it has made. */
interface FullOptimizerState {
  readonly className: string;
  readonly step: number;
}

/**
 * A plain tf.Optimizer training every variable marked `trainable` (full fine-tuning, or LoRA when only the
 * adapters are trainable): the baseline BAdam is compared with.
 */
export class FullStrategy<TBatch> extends DenseGradientStrategy<TBatch> {
  readonly description: string;
  private readonly parameters: readonly ParameterVariable[];
  private lr: number;

  constructor(
    private readonly optimizer: tf.Optimizer,
    named: readonly NamedVariable[],
    task: TfjsTrainingTask<TBatch>,
    options: DenseStrategyOptions,
  ) {
    super(named, task, options);
    this.parameters = named.filter(([, v]) => v.trainable).map(([name, variable]) => ({ name, variable }));
    this.lr = learningRateOf(optimizer) ?? 0;
    this.description =
      options.description ??
      `${optimizer.getClassName()} on tfjs (${tf.getBackend()}): ${this.parameters.length} trainable tensors`;
  }

  get learningRate(): number {
    return this.lr;
  }

  set learningRate(lr: number) {
    this.lr = requireNumber('learningRate', lr, { min: 0 });
    setLearningRate(this.optimizer, lr);
  }

  protected trained(): readonly ParameterVariable[] {
    return this.parameters;
  }

  protected apply(gradients: tf.NamedTensorMap): void {
    this.optimizer.applyGradients(gradients);
  }

  memory(): BackendMemoryReport {
    const bytes = tf.memory().numBytes;
    const weights = this.named.reduce((s, [, v]) => s + 4 * v.size, 0);
    return {
      bytes,
      byKind: { weights, gradients: this.pendingBytes() },
      source: `tf.memory() on the ${tf.getBackend()} backend`,
    };
  }

  protected async optimizerSnapshot(): Promise<TrainingSnapshot['optimizer']> {
    const state: FullOptimizerState = {
      className: this.optimizer.getClassName(),
      step: this.optimizer.iterations,
    };
    return { state, tensors: await exportOptimizerState(this.optimizer, this.parameters) };
  }

  protected async restoreOptimizer(saved: unknown, tensors: readonly NamedArray[]): Promise<void> {
    const state = saved as Partial<FullOptimizerState> | null;
    if (state?.className !== this.optimizer.getClassName() || !Number.isSafeInteger(state.step)) {
      throw new BadamStateError(
        `the checkpoint's optimizer state is ${JSON.stringify(state)}, this run trains with ${this.optimizer.getClassName()}; resume with the same optimizer`,
      );
    }
    await importOptimizerState(this.optimizer, this.parameters, tensors, state.step!);
  }
}
