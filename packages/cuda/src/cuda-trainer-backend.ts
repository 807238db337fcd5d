import {
  type BackendMemoryReport,
  type BackendModel,
  BlockOptimizer,
  BlockTrainer,
  type BlockTrainerTask,
  checkPlannedParameters,
  type FineTuningMethod,
  type PlannedTrainerBackend,
  type TrainingPlan,
  UsageError,
} from '@badam/core';
import { CudaBlockBackend, type CudaParameter } from './cuda-block-backend.js';
import type { Device } from './device.js';
import { DevicePeakTracker } from './device-peak-tracker.js';
import type { DeviceTensor } from './device-tensor.js';
import { cudaDeviceLabel } from './open-device.js';

/**
 * A model as @badam/cuda trains it: the device it lives on, its parameters as the device tensors it computes
 * with (the {@link CudaBlockBackend} takes them over and updates them in place; the model owns and frees
 * them), and its loss and gradients.
 */
export interface CudaTrainingModel<TBatch> {
  readonly device: Device;
  /** Every parameter in the model's order, by Hugging Face name, with the model's own device tensor. */
  parameters(): readonly (CudaParameter & { readonly values: DeviceTensor })[];
  /**
   * The model's loss and gradients of a micro-batch. `gradientOf(name)` is the backend's fp32 accumulator of a
   * trainable parameter: a model adds its gradients there and returns an empty map (or returns them).
   */
  task(gradientOf: (name: string) => DeviceTensor): BlockTrainerTask<TBatch, Float32Array | DeviceTensor>;
}

/**
 * The methods @badam/cuda's trainer backend cannot run yet, and what it lacks for each. The one table its
 * refusals come from: {@link createCudaTrainerBackend} refuses these plans, and a runner asks
 * {@link cudaMissingFor} to refuse them before any work.
 */
const MISSING: Readonly<Partial<Record<FineTuningMethod, string>>> = {
  lora: 'LoRA adapters',
  sparse: 'masked sparse update in its trainer',
};

/** What @badam/cuda lacks to train `method` (`'LoRA adapters'`), or undefined when it trains it. */
export function cudaMissingFor(method: FineTuningMethod): string | undefined {
  return MISSING[method];
}

/** BlockTrainer whose memory report carries the run's peak (the tracker restarts the allocator's counter). */
class CudaRunTrainer<TBatch> extends BlockTrainer<TBatch, unknown, Float32Array | DeviceTensor> {
  constructor(
    optimizer: ConstructorParameters<typeof BlockTrainer<TBatch, unknown, Float32Array | DeviceTensor>>[0],
    task: BlockTrainerTask<TBatch, Float32Array | DeviceTensor>,
    description: string,
    private readonly tracker: DevicePeakTracker,
  ) {
    super(optimizer, task, { description });
  }

  override memory(): BackendMemoryReport {
    return { ...super.memory(), peakBytes: this.tracker.peakBytes() };
  }
}

/**
 * @badam/cuda's trainer backend factory (core's `TrainerBackendFactory`): the plan's BlockOptimizer (core's
 * engine) over a {@link CudaBlockBackend} on the model's device, driven by core's {@link BlockTrainer} — the
 * same trainer, state and checkpoint names as every block backend — with the allocator's peaks by kind
 * measured around each forward and backward pass. A plan it cannot run yet (see {@link cudaMissingFor}) is a
 * `UsageError` that says what runs instead.
 *
 * @example
 * ```ts
 * const model = { device, parameters: () => deviceParameters, task: (gradientOf) => myTask(gradientOf) };
 * const plan = planTraining({ settings: { method: 'block', learningRate: 1e-5 }, parameters: model.parameters() });
 * const backend = await createCudaTrainerBackend(plan, model);
 * await new Trainer({ backend: backend.trainer, trainData, maxSteps: 100 }).train();
 * backend.dispose();
 * ```
 */
export async function createCudaTrainerBackend<TBatch>(
  plan: TrainingPlan,
  model: CudaTrainingModel<TBatch>,
): Promise<PlannedTrainerBackend<TBatch>> {
  const missing = cudaMissingFor(plan.method);
  if (missing !== undefined || plan.optimizer.kind !== 'block') {
    throw new UsageError(
      `${plan.label} (${plan.method}) does not run on @badam/cuda yet: it has no ${missing ?? 'BlockOptimizerRatio'}; train block or full on @badam/cuda, or ${plan.method} on @badam/tfjs (--backend tfjs)`,
    );
  }
  const { device } = model;
  const parameters = model.parameters();
  checkPlannedParameters(plan, parameters);
  const blocks = new CudaBlockBackend(device, parameters);
  const tracker = new DevicePeakTracker(device);
  const optimizer = new BlockOptimizer({ ...plan.optimizer.options, namedParameters: parameters }, blocks);
  const task = model.task((name) => blocks.gradientOf(name));
  const measured: BlockTrainerTask<TBatch, Float32Array | DeviceTensor> = {
    async lossAndGradients(batch, trainable) {
      tracker.sample(false);
      const result = await task.lossAndGradients(batch, trainable);
      tracker.sample(true);
      return result;
    },
    evaluate: (batch) => task.evaluate(batch),
  };
  const label = cudaDeviceLabel(device);
  const description =
    plan.method === 'block'
      ? `${plan.label} on ${label}: ${optimizer.summary}, base AdamW`
      : `${plan.label} on ${label}: AdamW over ${optimizer.trainableNames.length} trainable tensors`;
  const trainer = new CudaRunTrainer<TBatch>(optimizer, measured, description, tracker);
  let disposed = false;
  let peakBytes = 0;
  return {
    trainer,
    peakMemoryBytes: () => (disposed ? peakBytes : tracker.peakBytes()),
    peakMemoryByKind: () => tracker.peaksByKind(),
    nonFiniteWeights: () =>
      // A sum of squares in double is NaN or infinite exactly when an element is (bf16's largest squared is 1e77).
      parameters.filter((p) => !Number.isFinite(device.sumSquares([p.values]))).map((p) => p.name),
    dispose() {
      if (disposed) return;
      tracker.sample(false);
      peakBytes = tracker.peakBytes();
      disposed = true;
      // The active block's masters, gradients and Adam state; the weights are the model's.
      optimizer.dispose();
    },
  };
}

/**
 * A device model bound to {@link createCudaTrainerBackend}: core's `BackendModel`, what a runner plans and
 * trains without knowing the backend.
 */
export function cudaBackendModel<TBatch>(model: CudaTrainingModel<TBatch>): BackendModel<TBatch> {
  return {
    parameters: () => model.parameters().map((p) => ({ name: p.name, shape: [...p.shape], dtype: p.dtype })),
    createTrainerBackend: (plan) => createCudaTrainerBackend(plan, model),
  };
}
