import type { BackendModel, ModelPartition } from '@badam/core';

/**
 * A runner's model as the kit trains it, whatever its backend: what it is, how BAdam may split it, how it
 * gets LoRA adapters, and — from core's `BackendModel` — its parameters and its backend's trainer backend
 * factory already bound to it (`tfjsBackendModel` of @badam/tfjs, `cudaBackendModel` of @badam/cuda).
 *
 * @example
 * ```ts
 * const model: RunnerModel<Batch> = {
 *   kind: 'Llama',
 *   partition: { includeLmHead: true },
 *   addLora: () => llama.addLora(loraConfig),
 *   ...tfjsBackendModel({ namedParameters: () => llama.namedParameters, task: causalLmTask(llama) }),
 * };
 * ```
 */
export interface RunnerModel<TBatch> extends BackendModel<TBatch> {
  /** What the model is, for messages (`Llama`, `RoBERTa`). */
  readonly kind: string;
  /** Which non-layer parameters BAdam's partition includes, and what trains in every block. */
  readonly partition: ModelPartition;
  /** Adds LoRA adapters with the run's settings (LoRA runs only, before the run is planned). */
  addLora(): void;
}
