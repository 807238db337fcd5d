import {
  estimateActivationBytes,
  estimateMemory,
  type MemoryEstimate,
  type NamedParameterInfo,
} from '@badam/core';
import type { LlamaForCausalLM } from '@badam/models';
import { parameterInfoOf } from '@badam/tfjs';
import type { TrainOptions } from './train-options.js';

/**
 * Core's memory model for this run: fp32 weights (tfjs), the finetuning type's masters / gradients /
 * optimizer state, and activations for the longest padded batch. tfjs keeps every forward intermediate on
 * its tape, so measured activations run higher than this closed form (see docs/memory.md).
 */
export function estimateRunMemory(
  model: LlamaForCausalLM,
  options: TrainOptions,
  seqLength: number,
  blocks: readonly (readonly string[])[] | undefined,
): MemoryEstimate {
  const named = model.namedParameters;
  const parameters: NamedParameterInfo[] = parameterInfoOf(named);
  const activationBytes = estimateActivationBytes(
    { kind: 'decoder', ...model.config },
    {
      batchSize: options.batchSize,
      seqLength,
      dtype: 'float32',
      gradientCheckpointing: options.gradientCheckpointing,
      attention: 'eager',
    },
  );
  switch (options.finetuningType) {
    case 'full':
      return estimateMemory({ method: 'adam', parameters, activationBytes });
    case 'block':
      return estimateMemory({ method: 'badam', parameters, activationBytes, ...(blocks ? { blocks } : {}) });
    case 'sparse':
      return estimateMemory({
        method: 'ratio',
        parameters,
        activationBytes,
        updateRatio: options.updateRatio,
        maskMode: options.maskMode,
      });
    case 'lora': {
      const base = parameters.filter((p) => !p.name.includes('lora_'));
      const targets = base
        .filter((p) => /\.(q|k|v|o|gate|up|down)_proj\.weight$/.test(p.name))
        .filter(
          (p) => options.loraTarget === 'all' || options.loraTarget.some((t) => p.name.includes(`.${t}.`)),
        )
        .map((p) => p.name);
      return estimateMemory({
        method: 'lora',
        parameters: base,
        activationBytes,
        loraRank: options.loraRank,
        loraTargets: targets,
      });
    }
  }
}
