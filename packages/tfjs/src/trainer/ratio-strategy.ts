import type { BackendMemoryReport, NamedArray, TrainingSnapshot } from '@badam/core';
import type { UpdateMaskState } from '@badam/ratio';
import * as tf from '@tensorflow/tfjs-core';
import type { BlockOptimizerRatio } from '../block-optimizer-ratio.js';
import type { NamedVariable } from '../named-variables.js';
import type { ParameterVariable } from '../optimizer-state.js';
import { DenseGradientStrategy, type DenseStrategyOptions } from './dense-gradient-strategy.js';
import type { TfjsTrainingTask } from './tfjs-training-task.js';

/** BlockOptimizerRatio's strategy: dense gradients in, the masked sparse Adam update out. */
export class RatioStrategy<TBatch> extends DenseGradientStrategy<TBatch> {
  readonly description: string;
  private readonly parameters: readonly ParameterVariable[];

  constructor(
    private readonly optimizer: BlockOptimizerRatio,
    named: readonly NamedVariable[],
    task: TfjsTrainingTask<TBatch>,
    options: DenseStrategyOptions,
  ) {
    super(named, task, options);
    const byName = new Map(named);
    this.parameters = optimizer.masks.parameters.map((p) => ({
      name: p.name,
      variable: byName.get(p.name)!,
    }));
    const { masks } = optimizer;
    this.description =
      options.description ??
      `BAdam ratio on tfjs (${tf.getBackend()}): ${masks.maskMode} masks, windows move every ${masks.switchBlockEvery} steps`;
  }

  get learningRate(): number {
    return this.optimizer.learningRate;
  }

  set learningRate(lr: number) {
    this.optimizer.learningRate = lr;
  }

  protected trained(): readonly ParameterVariable[] {
    return this.parameters;
  }

  protected apply(gradients: tf.NamedTensorMap): void {
    this.optimizer.applyGradients(gradients);
  }

  memory(): BackendMemoryReport {
    return this.optimizer.memory();
  }

  protected async optimizerSnapshot(): Promise<TrainingSnapshot['optimizer']> {
    return { state: this.optimizer.state(), tensors: this.optimizer.stateTensors() };
  }

  protected async restoreOptimizer(state: unknown, tensors: readonly NamedArray[]): Promise<void> {
    this.optimizer.loadState(state as UpdateMaskState);
    this.optimizer.loadStateTensors(tensors);
  }
}
