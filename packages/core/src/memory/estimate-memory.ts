import { TRAINING_DEFAULTS } from '../defaults.js';
import { bytesPerElement } from '../dtype.js';
import { BadamOptionError } from '../errors.js';
import { type NamedParameterInfo, numel } from '../parameters.js';
import { inferBlockPrefixes } from '../partition/infer-block-prefixes.js';
import { isNormSegment, layerPrefixOf, owningModuleOf } from '../partition/parameter-roles.js';
import { requireInteger, requireNumber, requireOneOf } from '../validation.js';

/** Training methods the memory model covers. */
export type TrainingMethod = 'adam' | 'badam' | 'lora' | 'ratio';

/** All methods, for validation and CLI help. */
export const TRAINING_METHODS: readonly TrainingMethod[] = ['adam', 'badam', 'lora', 'ratio'];

/** Inputs of {@link estimateMemory}. */
export interface MemoryEstimateOptions {
  /** What is trained and how. */
  method: TrainingMethod;
  /** The model's parameters; each `dtype` is the weight storage dtype (bfloat16 on cuda, float32 on tfjs). */
  parameters: readonly NamedParameterInfo[];
  /** BAdam: the parameter names of each block (active modules included). Default: one block per layer. */
  blocks?: readonly (readonly string[])[];
  /** BAdam: the block to account for. Default: the largest, which sets the peak. */
  activeBlock?: number;
  /** LoRA: adapter rank r. Default 8. */
  loraRank?: number;
  /**
   * LoRA: names of the 2-D weights that get adapters. Default: every weight matrix inside a layer
   * (LLaMA-Factory's `lora_target: all`).
   */
  loraTargets?: readonly string[];
  /** BlockOptimizerRatio: fraction of each parameter's entries updated. Default 0.1. */
  updateRatio?: number;
  /** BlockOptimizerRatio: `scatter` stores the masked indices (4 bytes each); `adjacent` needs only offsets. Default `adjacent`. */
  maskMode?: 'adjacent' | 'scatter';
  /** BlockOptimizerRatio: parameters with fewer entries are updated whole. Default 100. */
  preserveThreshold?: number;
  /** Floats of optimizer state per trained element: 2 for Adam / AdamW (m and v). Default 2. */
  optimizerStateFloats?: number;
  /** Bytes of activations (from {@link estimateActivationBytes}); added to the total. Default 0. */
  activationBytes?: number;
}

/** Bytes per part, for one method. */
export interface MemoryEstimate {
  readonly method: TrainingMethod;
  /** All model weights in their storage dtype (plus LoRA adapters in fp32). */
  readonly weights: number;
  /** fp32 master copies of the trained elements (none when weights are already fp32). */
  readonly masters: number;
  /** Gradients of the trained elements. */
  readonly gradients: number;
  /** Optimizer state (Adam's m and v; the mask indices of scatter mode). */
  readonly optimizerState: number;
  /** Activations kept for backward, as given. */
  readonly activations: number;
  /** Sum of the parts. */
  readonly total: number;
  /** Elements in the model. */
  readonly totalElements: number;
  /** Elements updated by the optimizer (at once, for BAdam: the active block). */
  readonly trainedElements: number;
}

/**
 * BAdam's memory model, per part, for full Adam, BAdam, LoRA and BlockOptimizerRatio.
 *
 * - `adam` (mixed precision): weights, fp32 masters (when weights are 16-bit), fp32 gradients and Adam's
 *   two moments for every parameter: 18 bytes per parameter with bf16 weights, 16 with fp32.
 * - `badam`: all weights, plus masters, fp32 gradients and moments for the active block only:
 *   `2M + 16 M_block` bytes with bf16 weights (the seed's `2M + 16M/D`), `4M + 12 M_block` with fp32.
 * - `lora`: all weights frozen, fp32 adapters `r (in + out)` per target with gradients and moments.
 * - `ratio`: all weights; dense gradients in the weight dtype (autograd computes them for every trainable
 *   parameter); moments only for the `floor(n * updateRatio)` masked entries of each parameter.
 *
 * @example
 * ```ts
 * const params = parametersOf(parseHfConfig(BUILTIN_CONFIGS['llama3-8b'].config), 'bfloat16');
 * estimateMemory({ method: 'badam', parameters: params }).total / 1e9; // ~19.5
 * ```
 */
export function estimateMemory(options: MemoryEstimateOptions): MemoryEstimate {
  const method = requireOneOf('method', options.method, TRAINING_METHODS);
  const parameters = options.parameters;
  if (!Array.isArray(parameters) || parameters.length === 0) {
    throw new BadamOptionError('parameters', parameters, 'a non-empty array of { name, shape, dtype }');
  }
  const stateFloats = requireNumber('optimizerStateFloats', options.optimizerStateFloats ?? 2, { min: 0 });
  const activations = requireNumber('activationBytes', options.activationBytes ?? 0, { min: 0 });
  const byName = new Map(parameters.map((p) => [p.name, p]));
  let weights = 0;
  let totalElements = 0;
  for (const p of parameters) {
    const n = numel(p.shape);
    totalElements += n;
    weights += n * bytesPerElement(p.dtype);
  }
  /** Masters + fp32 gradients + moments for a set of fully trained parameters. */
  const fullTraining = (names: readonly string[]) => {
    let masters = 0;
    let elements = 0;
    for (const name of names) {
      const p = byName.get(name);
      if (p === undefined) throw new BadamOptionError('blocks', name, 'names of the given parameters');
      const n = numel(p.shape);
      elements += n;
      if (p.dtype !== 'float32') masters += 4 * n;
    }
    return { masters, gradients: 4 * elements, optimizerState: 4 * stateFloats * elements, elements };
  };

  let parts: { masters: number; gradients: number; optimizerState: number; elements: number };
  switch (method) {
    case 'adam':
      parts = fullTraining(parameters.map((p) => p.name));
      break;
    case 'badam': {
      const blocks = options.blocks ?? defaultBlocks(parameters);
      if (blocks.length === 0) throw new BadamOptionError('blocks', blocks, 'at least one block');
      const sizes = blocks.map((names) =>
        names.reduce((n, name) => n + numel(byName.get(name)?.shape ?? []), 0),
      );
      const index =
        options.activeBlock === undefined
          ? sizes.indexOf(Math.max(...sizes))
          : requireInteger('activeBlock', options.activeBlock, { min: 0, max: blocks.length - 1 });
      parts = fullTraining(blocks[index]!);
      break;
    }
    case 'lora': {
      const rank = requireInteger('loraRank', options.loraRank ?? TRAINING_DEFAULTS.lora.rank, { min: 1 });
      const targets = options.loraTargets ?? defaultLoraTargets(parameters);
      let adapterElements = 0;
      for (const name of targets) {
        const p = byName.get(name);
        if (p === undefined || p.shape.length !== 2) {
          throw new BadamOptionError('loraTargets', name, 'names of 2-D weights of the given parameters');
        }
        adapterElements += rank * (p.shape[0]! + p.shape[1]!);
      }
      weights += 4 * adapterElements;
      parts = {
        masters: 0,
        gradients: 4 * adapterElements,
        optimizerState: 4 * stateFloats * adapterElements,
        elements: adapterElements,
      };
      break;
    }
    case 'ratio': {
      const ratio = requireNumber('updateRatio', options.updateRatio ?? TRAINING_DEFAULTS.ratio.updateRatio, {
        min: 0,
        max: 1,
        exclusiveMin: true,
      });
      const maskMode = requireOneOf('maskMode', options.maskMode ?? TRAINING_DEFAULTS.ratio.maskMode, [
        'adjacent',
        'scatter',
      ] as const);
      const threshold = requireInteger(
        'preserveThreshold',
        options.preserveThreshold ?? TRAINING_DEFAULTS.ratio.preserveThreshold,
        { min: 0 },
      );
      let gradients = 0;
      let masked = 0;
      let indices = 0;
      for (const name of (options.blocks ?? defaultBlocks(parameters)).flat()) {
        const p = byName.get(name)!;
        const n = numel(p.shape);
        gradients += n * bytesPerElement(p.dtype);
        const k = n < threshold ? n : Math.floor(n * ratio);
        masked += k;
        if (maskMode === 'scatter' && n >= threshold) indices += 4 * k;
      }
      parts = { masters: 0, gradients, optimizerState: 4 * stateFloats * masked + indices, elements: masked };
      break;
    }
  }
  const total = weights + parts.masters + parts.gradients + parts.optimizerState + activations;
  return {
    method,
    weights,
    masters: parts.masters,
    gradients: parts.gradients,
    optimizerState: parts.optimizerState,
    activations,
    total,
    totalElements,
    trainedElements: parts.elements,
  };
}

/**
 * The seed's back-of-the-envelope figures from the BAdam paper, for M parameters and D blocks with 16-bit
 * weights: BAdam `2M + 16M/D` bytes (weights, plus fp32 master, gradient and two moments for 1/D of the
 * model), full mixed-precision Adam `18M`.
 */
export function seedMemoryEstimate(
  parameterCount: number,
  blocks: number,
): {
  weights: number;
  activeBlock: number;
  badam: number;
  adam: number;
} {
  const m = requireNumber('parameterCount', parameterCount, { min: 0 });
  const d = requireInteger('blocks', blocks, { min: 1 });
  return { weights: 2 * m, activeBlock: (16 * m) / d, badam: 2 * m + (16 * m) / d, adam: 18 * m };
}

function defaultBlocks(parameters: readonly NamedParameterInfo[]): string[][] {
  const names = parameters.map((p) => p.name);
  return inferBlockPrefixes(names).map((prefixes) =>
    names.filter((n) => prefixes.some((p) => n.includes(p))),
  );
}

function defaultLoraTargets(parameters: readonly NamedParameterInfo[]): string[] {
  return parameters
    .filter((p) => {
      if (p.shape.length !== 2 || layerPrefixOf(p.name) === undefined || !p.name.endsWith('.weight'))
        return false;
      const owner = owningModuleOf(p.name).split('.').filter(Boolean);
      return !isNormSegment(owner[owner.length - 1] ?? '');
    })
    .map((p) => p.name);
}
