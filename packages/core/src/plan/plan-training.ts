import { TRAINING_DEFAULTS } from '../defaults.js';
import { BadamOptionError } from '../errors.js';
import { clipGradNormOf } from '../optimizer/gradient-accumulation.js';
import { consoleLog, type LogFn } from '../optimizer/log.js';
import { resolveOptimizerDescription } from '../optimizer/optimizer-description.js';
import type { MaskMode, UpdateMaskOptions } from '../optimizer/update-mask-options.js';
import { type NamedParameterInfo, validateNamedParameters } from '../parameters.js';
import { BlockPartition } from '../partition/block-partition.js';
import { isTrainedByRatio } from '../partition/ratio-trained.js';
import type { SwitchMode } from '../schedule/block-schedule.js';
import { suggestSwitchBlockEvery } from '../schedule/suggest-switch-block-every.js';
import { requireOneOf } from '../validation.js';
import {
  FINE_TUNING_METHOD_SPECS,
  FINE_TUNING_METHODS,
  type FineTuningMethod,
} from './fine-tuning-methods.js';
import type {
  ModelPartition,
  PlannedBlockOptimizerOptions,
  PlannedPartition,
  TrainingPlan,
} from './training-plan.js';

/** A run's settings as core plans them, whatever the backend and whatever a command line calls them. */
export interface TrainingSettings {
  readonly method: FineTuningMethod;
  /** Learning rate of the first step (schedules change it later). */
  readonly learningRate: number;
  /** AdamW's decoupled weight decay (skipped for biases and norms; the ratio has none). Default 0: none. */
  readonly weightDecay?: number;
  /** Adam's beta1 and beta2, for AdamW and the ratio's sparse Adam alike. Default `[0.9, 0.999]`. */
  readonly betas?: readonly [number, number];
  /** Adam's epsilon, added to the denominator, for AdamW and the ratio's sparse Adam alike. Default 1e-8. */
  readonly epsilon?: number;
  /** Seed of the block order and the scatter permutations. Default 42. */
  readonly seed?: number;
  /** Micro-batches per optimizer step. Default 1. */
  readonly gradientAccumulationSteps?: number;
  /** Clip each update's mean gradient to this global L2 norm. Absent or 0: no clipping. */
  readonly clipGradNorm?: number;
  /**
   * K: BAdam's optimizer steps per block, the ratio's steps per window. Unset: BAdam takes
   * {@link TrainingPlanInput.defaultSwitchBlockEvery}, the ratio 100.
   */
  readonly switchBlockEvery?: number;
  /** BAdam's block order. Default `ascending`. */
  readonly switchMode?: SwitchMode;
  /** BAdam's first block. */
  readonly startBlock?: number;
  /** The ratio's fraction of entries updated per step. Default 0.1. */
  readonly updateRatio?: number;
  /** The ratio's mask layout. Default `adjacent`. */
  readonly maskMode?: MaskMode;
  /** 0 quiet, 1 partition and switches, 2 trainable parameter lists (BAdam only). Default 1. */
  readonly verbose?: 0 | 1 | 2;
  /** Examples per micro-batch: B of K's suggestion is this times the accumulation steps. Default 1. */
  readonly batchSize?: number;
}

/** What {@link planTraining} needs: the run's settings, the model's parameters and its partition choices. */
export interface TrainingPlanInput {
  readonly settings: TrainingSettings;
  /** The model's parameters now (LoRA adapters included for `lora`), in model order. */
  readonly parameters: readonly NamedParameterInfo[];
  /** Which non-layer parameters the partition includes, and what trains in every block. Default: none. */
  readonly partition?: ModelPartition;
  /**
   * BAdam's K when the settings give none: a number, or `'suggest'` for core's suggestion
   * `min(max(round(n / (B * D)), 50), 100)` (which then needs `trainExamples`). Default 50.
   */
  readonly defaultSwitchBlockEvery?: number | 'suggest';
  /** n: training examples, for K's suggestion. */
  readonly trainExamples?: number;
  /** How the caller names K in the message that reports a suggested K (`--switch_block_every`). Default `switchBlockEvery`. */
  readonly switchBlockEveryName?: string;
  /** Where the plan's and the optimizer's messages go. Default: console. */
  readonly logFn?: LogFn;
}

/**
 * Plans a run: the method's optimizer with its options (BAdam's block schedule, full Adam and LoRA as one
 * block that never switches, or the ratio's masks), the base optimizer (AdamW with the settings' betas and
 * epsilon, which the ratio's sparse Adam takes too), accumulation, clipping and
 * seed, and the partition the plan produces. Backend-neutral: a backend's factory builds the plan's
 * optimizer on its tensors. When BAdam's K is suggested, a line says which K and why.
 *
 * @example
 * ```ts
 * const plan = planTraining({
 *   settings: { method: 'block', learningRate: 1e-5, switchBlockEvery: 50 },
 *   parameters, // [{ name: 'model.layers.0.mlp.up_proj.weight', shape: [11008, 4096], dtype: 'bfloat16' }, ...]
 *   partition: { includeLmHead: true },
 * });
 * plan.partition.groups.length; // D: one group per layer, and the head
 * ```
 */
export function planTraining(input: TrainingPlanInput): TrainingPlan {
  const { settings } = input;
  const method = requireOneOf('settings.method', settings.method, FINE_TUNING_METHODS);
  const spec = FINE_TUNING_METHOD_SPECS[method];
  // Plain data: a model's own parameter objects may carry its tensors.
  const parameters = validateNamedParameters(input.parameters).map(({ name, shape, dtype }) => ({
    name,
    shape: [...shape],
    dtype,
  }));
  const logFn = input.logFn ?? consoleLog;
  const baseOptimizer = resolveOptimizerDescription({
    type: 'adamw',
    learningRate: settings.learningRate,
    ...(settings.weightDecay !== undefined ? { weightDecay: settings.weightDecay } : {}),
    ...(settings.betas !== undefined ? { betas: settings.betas } : {}),
    ...(settings.epsilon !== undefined ? { epsilon: settings.epsilon } : {}),
  }) as TrainingPlan['baseOptimizer'];
  const common = {
    method,
    label: spec.label,
    parameters,
    baseOptimizer,
    gradientAccumulationSteps:
      settings.gradientAccumulationSteps ?? TRAINING_DEFAULTS.gradientAccumulationSteps,
    clipGradNorm: clipGradNormOf(settings.clipGradNorm),
    seed: settings.seed ?? TRAINING_DEFAULTS.seed,
    logFn,
  };
  const partition = input.partition ?? {};
  const names = parameters.map((p) => p.name);
  if (spec.optimizer === 'ratio') {
    const masks: UpdateMaskOptions = {
      switchBlockEvery: settings.switchBlockEvery ?? TRAINING_DEFAULTS.ratio.switchBlockEvery,
      seed: common.seed,
      includeEmbedding: partition.includeEmbedding ?? false,
      includeLmHead: partition.includeLmHead ?? false,
      ...(settings.updateRatio !== undefined ? { updateRatio: settings.updateRatio } : {}),
      ...(settings.maskMode !== undefined ? { maskMode: settings.maskMode } : {}),
    };
    const trained = names.filter((name) => isTrainedByRatio(name, masks));
    return {
      ...common,
      optimizer: {
        kind: 'ratio',
        masks,
        verbose: (settings.verbose ?? TRAINING_DEFAULTS.verbose) >= 1 ? 1 : 0,
      },
      partition: { groups: [trained], frozenNames: names.filter((name) => !trained.includes(name)) },
    };
  }
  const shared = {
    baseOptimizer,
    seed: common.seed,
    gradientAccumulationSteps: common.gradientAccumulationSteps,
    ...(common.clipGradNorm !== undefined ? { clipGradNorm: common.clipGradNorm } : {}),
    logFn,
  };
  let options: PlannedBlockOptimizerOptions;
  let blocks: BlockPartition;
  if (method === 'block') {
    const layout = {
      includeEmbedding: partition.includeEmbedding ?? false,
      includeLmHead: partition.includeLmHead ?? false,
      ...(partition.activeModules?.length ? { activeModules: partition.activeModules } : {}),
    };
    blocks = BlockPartition.create(names, layout);
    options = {
      ...shared,
      ...layout,
      switchBlockEvery: settings.switchBlockEvery ?? defaultK(input, blocks.blocks.length, logFn),
      switchMode: settings.switchMode ?? TRAINING_DEFAULTS.switchMode,
      ...(settings.startBlock !== undefined ? { startBlock: settings.startBlock } : {}),
      verbose: settings.verbose ?? TRAINING_DEFAULTS.verbose,
    };
  } else {
    // Full Adam and LoRA: one block of every parameter, never switching. In LoRA mode only the adapters
    // train, and the model's always-trained modules (a task head) with them.
    const activeModules = method === 'lora' ? (partition.activeModules ?? []) : [];
    blocks = BlockPartition.create(names, {
      preset: 'model',
      ...(activeModules.length > 0 ? { activeModules } : {}),
    });
    options = {
      ...shared,
      partition: 'model',
      switchBlockEvery: -1,
      ...(activeModules.length > 0 ? { activeModules } : {}),
      verbose: 0,
    };
  }
  return {
    ...common,
    optimizer: { kind: 'block', options },
    partition: partitionOf(blocks, names),
  };
}

/** BAdam's K when the settings give none: the caller's number, or core's suggestion with a line saying why. */
function defaultK(input: TrainingPlanInput, blockCount: number, logFn: LogFn): number {
  const fallback = input.defaultSwitchBlockEvery ?? TRAINING_DEFAULTS.switchBlockEvery;
  if (fallback !== 'suggest') return fallback;
  const { settings } = input;
  if (input.trainExamples === undefined) {
    throw new BadamOptionError(
      'trainExamples',
      undefined,
      "the number of training examples when defaultSwitchBlockEvery is 'suggest'",
      'give trainExamples, or a number as defaultSwitchBlockEvery or settings.switchBlockEvery',
    );
  }
  const effectiveBatchSize =
    (settings.batchSize ?? 1) *
    (settings.gradientAccumulationSteps ?? TRAINING_DEFAULTS.gradientAccumulationSteps);
  const k = suggestSwitchBlockEvery({
    examples: input.trainExamples,
    effectiveBatchSize,
    blocks: blockCount,
  });
  logFn(
    `BAdam: ${input.switchBlockEveryName ?? 'switchBlockEvery'} not set: using ${k} = min(max(round(n / (B * D)), 50), 100) for n = ${input.trainExamples}, B = ${effectiveBatchSize}, D = ${blockCount}`,
    'info',
  );
  return k;
}

/** The groups a BlockOptimizer trains together (each eligible block with the active modules) and the rest. */
function partitionOf(blocks: BlockPartition, names: readonly string[]): PlannedPartition {
  const groups = blocks.eligibleBlocks.map((b) => blocks.trainableNamesOf(b));
  const trained = new Set(groups.flat());
  return { groups, frozenNames: names.filter((name) => !trained.has(name)), blocks };
}

/**
 * Checks that `parameters` (a backend's view of the model) are the ones `plan` was made for: the same names
 * in the same order, with the same shapes. A factory calls it first, so a plan made before LoRA adapters
 * were added, or for another model, is an error instead of a run that trains the wrong parameters.
 *
 * @throws BadamOptionError naming the first parameter that differs.
 */
export function checkPlannedParameters(
  plan: Pick<TrainingPlan, 'parameters'>,
  parameters: readonly NamedParameterInfo[],
): void {
  const planned = plan.parameters;
  const count = Math.max(planned.length, parameters.length);
  for (let i = 0; i < count; i++) {
    const p = planned[i];
    const q = parameters[i];
    if (p?.name === q?.name && p?.shape.join('x') === q?.shape.join('x')) continue;
    const describe = (x: NamedParameterInfo | undefined) =>
      x ? `${x.name} [${x.shape.join(', ')}]` : 'nothing';
    throw new BadamOptionError(
      `parameter ${i} of the model`,
      describe(q),
      `${describe(p)}, as in the plan`,
      'plan the run with the parameters the backend trains (after adding LoRA adapters), in model order',
    );
  }
}
