import { BadamOptionError, BadamStateError } from '../errors.js';
import type { NamedArray } from '../named-array.js';
import type { BackendMemoryReport, CheckpointableBlockBackend } from '../optimizer/block-backend.js';
import type { BlockOptimizer, BlockOptimizerState } from '../optimizer/block-optimizer.js';
import { numel } from '../parameters.js';
import type {
  EvaluationResult,
  MicroBatchResult,
  OptimizerStepResult,
  TrainerBackend,
  TrainingSnapshot,
} from './trainer-backend.js';

/** What a model computes for the {@link BlockTrainer}, in its backend's tensor type. */
export interface BlockTrainerTask<TBatch, TGradient> {
  /**
   * Forward and backward on a micro-batch: its mean loss, its token (or example) count, and the gradients
   * of the parameters named in `trainable` only (BAdam's backward stops at the active block). The
   * trainer hands the gradients to the backend, which takes ownership of them.
   */
  lossAndGradients(
    batch: TBatch,
    trainable: readonly string[],
  ):
    | { loss: number; tokens: number; gradients: ReadonlyMap<string, TGradient> }
    | Promise<{ loss: number; tokens: number; gradients: ReadonlyMap<string, TGradient> }>;
  /** Loss and metrics of an evaluation batch (no gradients). */
  evaluate(batch: TBatch): EvaluationResult | Promise<EvaluationResult>;
}

/** Options of a {@link BlockTrainer}. */
export interface BlockTrainerOptions {
  /** The line the trainer logs for this run. Default: BAdam's partition and schedule. */
  description?: string;
}

/**
 * The {@link TrainerBackend} of every block backend: core's `Trainer` drives it, a
 * {@link BlockOptimizer} decides what trains when (accumulation, clipping, the schedule), a
 * {@link CheckpointableBlockBackend} owns the tensors, and a {@link BlockTrainerTask} computes loss and
 * gradients. Snapshots hold every weight, BAdam's state as plain JSON and the active block's optimizer
 * tensors under PyTorch's names, so a checkpoint written by one backend resumes on another.
 *
 * @example
 * ```ts
 * const backend = new ReferenceBackend(parameters);
 * const optimizer = new BlockOptimizer({ baseOptimizer: { type: 'adamw', learningRate: 1e-3 },
 *   namedParameters: parameters, switchBlockEvery: 10 }, backend);
 * const trainer = new Trainer({ backend: new BlockTrainer(optimizer, task), trainData, maxSteps: 100 });
 * await trainer.train();
 * ```
 */
export class BlockTrainer<TBatch, TBaseOptimizer = unknown, TGradient = unknown>
  implements TrainerBackend<TBatch>
{
  readonly description: string;
  readonly gradientAccumulationSteps: number;
  readonly optimizer: BlockOptimizer<TBaseOptimizer, CheckpointableBlockBackend<TBaseOptimizer, TGradient>>;
  readonly task: BlockTrainerTask<TBatch, TGradient>;
  /** False for one block that never switches (full training or LoRA through the engine): no block to report. */
  private readonly blockwise: boolean;

  constructor(
    optimizer: BlockOptimizer<TBaseOptimizer, CheckpointableBlockBackend<TBaseOptimizer, TGradient>>,
    task: BlockTrainerTask<TBatch, TGradient>,
    options: BlockTrainerOptions = {},
  ) {
    if (typeof task?.lossAndGradients !== 'function' || typeof task.evaluate !== 'function') {
      throw new BadamOptionError(
        'task',
        task,
        'an object with lossAndGradients(batch, trainable) and evaluate(batch)',
      );
    }
    this.optimizer = optimizer;
    this.task = task;
    this.gradientAccumulationSteps = optimizer.gradientAccumulationSteps;
    this.blockwise = !(optimizer.partition.blocks.length === 1 && optimizer.switchBlockEvery === -1);
    this.description = options.description ?? `BAdam: ${optimizer.summary}`;
  }

  /** The block being trained (undefined when the whole run is one block that never switches). */
  get activeBlock(): number | undefined {
    return this.blockwise ? this.optimizer.activeBlock.index : undefined;
  }

  get learningRate(): number {
    return this.optimizer.lr;
  }

  set learningRate(lr: number) {
    this.optimizer.lr = lr;
  }

  async forwardBackward(batch: TBatch): Promise<MicroBatchResult> {
    const { loss, tokens, gradients } = await this.task.lossAndGradients(
      batch,
      this.optimizer.trainableNames,
    );
    this.optimizer.backend.accumulateGradients(gradients);
    return { loss, tokens };
  }

  step(): OptimizerStepResult {
    const outcome = this.optimizer.step();
    if (this.blockwise) return outcome;
    return {
      applied: outcome.applied,
      ...(outcome.gradNorm !== undefined ? { gradNorm: outcome.gradNorm } : {}),
    };
  }

  discardGradients(): void {
    this.optimizer.discardPendingGradients();
  }

  evaluate(batch: TBatch): EvaluationResult | Promise<EvaluationResult> {
    return this.task.evaluate(batch);
  }

  memory(): BackendMemoryReport {
    return this.optimizer.backend.memory();
  }

  async snapshot(): Promise<TrainingSnapshot> {
    const backend = this.optimizer.backend;
    return {
      weights: await backend.readWeights(),
      optimizer: { state: this.optimizer.state(), tensors: await backend.exportOptimizerTensors() },
    };
  }

  /**
   * Restores a snapshot from any backend: every weight (checked by name and shape), BAdam's state (the
   * saved block is activated afresh) and the active block's optimizer tensors.
   */
  async restore(snapshot: TrainingSnapshot): Promise<void> {
    const saved = new Map(snapshot.weights.map((w) => [w.name, w]));
    const weights = new Map<string, NamedArray>();
    for (const info of this.optimizer.namedParameters) {
      const w = saved.get(info.name);
      if (w === undefined) {
        throw new BadamStateError(
          `the checkpoint has no weight ${JSON.stringify(info.name)}; resume with the model it was saved from`,
        );
      }
      if (w.shape.join(',') !== info.shape.join(',') || w.data.length !== numel(info.shape)) {
        throw new BadamStateError(
          `the checkpoint's ${info.name} has shape [${w.shape.join(', ')}], the model's is [${info.shape.join(', ')}]`,
        );
      }
      if (w.dtype !== 'float32') {
        throw new BadamStateError(
          `the checkpoint's ${info.name} is ${w.dtype}; checkpoints hold fp32 weights (was this file written by a BAdam trainer?)`,
        );
      }
      weights.set(info.name, w);
    }
    const backend = this.optimizer.backend;
    this.optimizer.discardPendingGradients();
    await backend.writeWeights(weights);
    const state = snapshot.optimizer.state as BlockOptimizerState;
    this.optimizer.loadState(state);
    await backend.importOptimizerTensors(snapshot.optimizer.tensors, this.optimizer.stepsInBlock);
  }
}
