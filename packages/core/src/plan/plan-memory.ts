import { estimateMemory, type MemoryEstimate } from '../memory/estimate-memory.js';
import { numel } from '../parameters.js';
import { isLoraParameter, loraAdaptedModuleOf, owningModuleOf } from '../partition/parameter-roles.js';
import { FINE_TUNING_METHOD_SPECS } from './fine-tuning-methods.js';
import type { TrainingPlan } from './training-plan.js';

/** Elements trained at once under a plan: the largest of its partition's groups. */
export function trainedElements(plan: Pick<TrainingPlan, 'parameters' | 'partition'>): number {
  const sizes = new Map(plan.parameters.map((p) => [p.name, numel(p.shape)]));
  return Math.max(...plan.partition.groups.map((g) => g.reduce((n, name) => n + sizes.get(name)!, 0)));
}

/** The model's own parameters under a plan: all but LoRA adapters. */
export function baseParametersOf(plan: Pick<TrainingPlan, 'parameters'>): TrainingPlan['parameters'] {
  return plan.parameters.filter((p) => !isLoraParameter(p.name));
}

/**
 * Core's memory model for a plan: the weights, and the masters, gradients and optimizer state of what the
 * plan trains (BAdam: its largest group; the ratio: its masked entries; LoRA: adapters on the weights that
 * have them; full Adam: everything), plus the activations the caller estimated.
 *
 * @example
 * ```ts
 * const estimate = estimatePlanMemory(plan, { activationBytes: 2e9 });
 * estimate.total; // bytes
 * ```
 */
export function estimatePlanMemory(
  plan: TrainingPlan,
  options: { readonly activationBytes?: number; readonly loraRank?: number } = {},
): MemoryEstimate {
  const { parameters, partition } = plan;
  const activationBytes = options.activationBytes ?? 0;
  switch (FINE_TUNING_METHOD_SPECS[plan.method].memoryMethod) {
    case 'badam':
      return estimateMemory({ method: 'badam', parameters, activationBytes, blocks: partition.groups });
    case 'ratio': {
      const masks = plan.optimizer.kind === 'ratio' ? plan.optimizer.masks : {};
      return estimateMemory({
        method: 'ratio',
        parameters,
        activationBytes,
        blocks: partition.groups,
        ...(masks.updateRatio !== undefined ? { updateRatio: masks.updateRatio } : {}),
        ...(masks.maskMode !== undefined ? { maskMode: masks.maskMode } : {}),
        ...(masks.preserveThreshold !== undefined ? { preserveThreshold: masks.preserveThreshold } : {}),
      });
    }
    case 'lora': {
      const base = baseParametersOf(plan);
      const adapted = new Set(
        parameters.map((p) => loraAdaptedModuleOf(p.name)).filter((m): m is string => m !== undefined),
      );
      return estimateMemory({
        method: 'lora',
        parameters: base,
        activationBytes,
        ...(options.loraRank !== undefined ? { loraRank: options.loraRank } : {}),
        // An adapter on <module> adapts <module>.weight (peft: <module>.base_layer.weight).
        loraTargets: base
          .map((p) => p.name)
          .filter((name) => name.endsWith('.weight') && adapted.has(owningModuleOf(name))),
      });
    }
    case 'adam':
      return estimateMemory({ method: 'adam', parameters, activationBytes });
  }
}
