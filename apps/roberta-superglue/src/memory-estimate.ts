import { estimateActivationBytes, estimateMemory, type MemoryEstimate } from '@badam/core';
import type { EncoderClassifier } from '@badam/models';
import { parameterInfoOf } from '@badam/tfjs';
import type { RobertaOptions } from './options.js';

/**
 * Core's memory model for a run: fp32 weights (tfjs), the method's masters / gradients / optimizer state,
 * and activations of a batch of `rows` rows of `seqLength` tokens. tfjs keeps every forward intermediate on
 * its tape, so the measured peak runs higher than this closed form (docs/memory.md).
 */
export function estimateRobertaRun(
  model: EncoderClassifier,
  options: RobertaOptions,
  rows: number,
  seqLength: number,
): MemoryEstimate {
  const all = parameterInfoOf(model.namedParameters);
  const parameters = all.filter((p) => !p.name.includes('lora_'));
  const activationBytes = estimateActivationBytes(
    { kind: 'encoder', ...model.config },
    { batchSize: rows, seqLength, dtype: 'float32', attention: 'eager' },
  );
  const family = model.config.family;
  const head = model.headParameterNames;
  switch (options.method) {
    case 'full':
      return estimateMemory({ method: 'adam', parameters, activationBytes });
    case 'block': {
      const layers = Array.from({ length: model.config.numLayers }, (_, i) =>
        parameters.map((p) => p.name).filter((n) => n.startsWith(`${family}.encoder.layer.${i}.`)),
      );
      const blocks = options.trainLastLayer ? layers.map((names) => [...names, ...head]) : [...layers, head];
      return estimateMemory({ method: 'badam', parameters, activationBytes, blocks });
    }
    case 'sparse':
      return estimateMemory({
        method: 'ratio',
        parameters,
        activationBytes,
        updateRatio: options.updateRatio,
        maskMode: options.maskMode,
      });
    case 'lora':
      return estimateMemory({
        method: 'lora',
        parameters,
        activationBytes,
        loraRank: options.loraRank,
        loraTargets: parameters
          .map((p) => p.name)
          .filter((n) => /\.attention\.self\.(query|value)\.weight$/.test(n)),
      });
  }
}
