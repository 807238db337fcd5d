import type { NamedParameterInfo } from '../parameters.js';
import type { TrainingPlan } from '../plan/training-plan.js';
import type { TrainerBackend } from './trainer-backend.js';

/**
 * A trainer backend a backend's factory made for a plan, with what a run measures beside it. The caller
 * drives `trainer` (core's `Trainer` does), then calls `dispose()` once training ends.
 */
export interface PlannedTrainerBackend<TBatch> {
  /** What the Trainer drives: the plan's optimizer on the backend's tensors, with the model's task. */
  readonly trainer: TrainerBackend<TBatch>;
  /** Most bytes the backend held at once since it was made (fixed once disposed). */
  peakMemoryBytes(): number;
  /**
   * The most bytes of each kind held at once (weights, masters, gradients, optimizerState, activations,
   * ...), where the backend's allocator tells them apart; absent otherwise.
   */
  peakMemoryByKind?(): Readonly<Record<string, number>>;
  /** Names of the model's weights that hold NaN or infinity now (a diverged model must not be saved). */
  nonFiniteWeights(): string[];
  /** Frees the optimizer's state and stops the measurements. The model's weights stay the model's. */
  dispose(): void;
}

/**
 * The one contract between core and a backend package: a run's {@link TrainingPlan} and the backend's view
 * of the model in, a {@link PlannedTrainerBackend} out. Each backend package exports one
 * (`createTfjsTrainerBackend`, `createCudaTrainerBackend`); a backend that cannot run a plan (a method it
 * has no kernels for) throws a `UsageError` that says what runs instead. `TModel` is what the backend needs
 * of the model: its parameters as the backend's tensors, and the loss and gradients of a micro-batch.
 *
 * @example
 * ```ts
 * const plan = planTraining({ settings: { method: 'block', learningRate: 1e-3 }, parameters });
 * const backend = await createTfjsTrainerBackend(plan, { namedParameters: () => model.namedParameters, task });
 * try {
 *   await new Trainer({ backend: backend.trainer, trainData, maxSteps: 100 }).train();
 * } finally {
 *   backend.dispose();
 * }
 * ```
 */
export type TrainerBackendFactory<TModel, TBatch> = (
  plan: TrainingPlan,
  model: TModel,
) => Promise<PlannedTrainerBackend<TBatch>>;

/**
 * A model bound to its backend: its parameters as they are now, and its backend's factory with the model
 * already given. What a runner plans and trains without knowing the backend (a backend package makes one:
 * `tfjsBackendModel`, `cudaBackendModel`).
 */
export interface BackendModel<TBatch> {
  /** The model's parameters now (LoRA adapters included once added): names, shapes, storage dtypes. */
  parameters(): readonly NamedParameterInfo[];
  /** The backend's {@link TrainerBackendFactory}, bound to this model. */
  createTrainerBackend(plan: TrainingPlan): Promise<PlannedTrainerBackend<TBatch>>;
}
