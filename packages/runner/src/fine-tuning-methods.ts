import {
  type BlockOptimizerOptions,
  BlockPartition,
  estimateMemory,
  type LogFn,
  type MemoryEstimate,
  type NamedParameterInfo,
  numel,
  type OptimizerDescription,
  suggestSwitchBlockEvery,
  type TrainingMethod,
} from '@badam/core';
import { type UpdateMaskOptions, UpdateMaskSchedule } from '@badam/ratio';
import type { RunOptions } from './run-options.js';

/** The fine-tuning methods every runner offers: BAdam, full Adam, LoRA and BAdam's ratio variant. */
export const FINE_TUNING_METHODS = ['block', 'full', 'lora', 'sparse'] as const;

/** A fine-tuning method. */
export type FineTuningMethod = (typeof FINE_TUNING_METHODS)[number];

/** Which parameters a model offers to BAdam's partition, beyond its layers. */
export interface ModelPartition {
  /** The embedding is a block (block), or trained (sparse). */
  readonly includeEmbedding?: boolean;
  /** The final norm, `lm_head` and other non-layer parameters form the last block (block), or `lm_head` is trained (sparse). */
  readonly includeLmHead?: boolean;
  /** Prefixes trained in every block and by LoRA too (e.g. a classification head). */
  readonly activeModules?: readonly string[];
}

/**
 * What a method trains with, backend-neutral: a BlockOptimizer (BAdam; full Adam and LoRA are BAdam with
 * one block that never switches), or a BlockOptimizerRatio.
 */
export type OptimizerPlan =
  | {
      readonly kind: 'block';
      readonly options: Omit<BlockOptimizerOptions<OptimizerDescription>, 'namedParameters'>;
    }
  | {
      readonly kind: 'ratio';
      /** The masks, and the optimizer's learning rate and messages. */
      readonly options: UpdateMaskOptions & {
        readonly learningRate: number;
        readonly betas: readonly [number, number];
        readonly epsilon: number;
        readonly verbose: 0 | 1;
        readonly logFn: LogFn;
      };
      /** Micro-batches per update and global-norm clipping, applied by the trainer backend. */
      readonly gradientAccumulationSteps: number;
      readonly clipGradNorm: number | undefined;
    };

/** What planning a method needs to know. */
export interface PlanInput {
  readonly options: RunOptions;
  /** The model's parameters now (LoRA adapters included for `lora`). */
  readonly parameters: readonly NamedParameterInfo[];
  readonly partition: ModelPartition;
  /** Training examples, for BAdam's suggested K. */
  readonly trainExamples: number;
  /** K when `--switch_block_every` is not given: a number, or `'suggest'` for core's suggestion. */
  readonly defaultSwitchBlockEvery: number | 'suggest';
  /** Where the optimizer's messages go. */
  readonly logFn: LogFn;
  /** The runner's name for K's flag, for the message that reports the suggested K. */
  readonly switchFlag: string;
}

/** One row of the method table. */
export interface MethodSpec {
  /** What the method is called in logs and tables. */
  readonly label: string;
  /** The method in core's memory model. */
  readonly memoryMethod: TrainingMethod;
  /** Whether the model needs LoRA adapters first. */
  readonly needsLora: boolean;
  /** The optimizer it trains with. */
  plan(input: PlanInput): OptimizerPlan;
}

/** Flags (canonical names) that only some methods take, and which. */
export const METHOD_FLAGS: Readonly<Record<string, readonly FineTuningMethod[]>> = {
  switch_block_every: ['block', 'sparse'],
  start_block: ['block'],
  update_ratio: ['sparse'],
  mask_mode: ['sparse'],
};

/** True when `method` takes `flag` (a canonical name); flags in no row of {@link METHOD_FLAGS} are for every method. */
export function methodAccepts(
  method: FineTuningMethod,
  flag: string,
  extra: Readonly<Record<string, readonly FineTuningMethod[]>> = {},
): boolean {
  const methods = extra[flag] ?? METHOD_FLAGS[flag];
  return methods === undefined || methods.includes(method);
}

function adamw(options: RunOptions): OptimizerDescription {
  return {
    type: 'adamw',
    learningRate: options.learningRate,
    weightDecay: options.weightDecay,
    betas: options.adamBetas,
    epsilon: options.adamEpsilon,
  };
}

function common(options: RunOptions, logFn: LogFn) {
  return {
    baseOptimizer: adamw(options),
    seed: options.seed,
    gradientAccumulationSteps: options.gradientAccumulationSteps,
    ...(options.maxGradNorm > 0 ? { clipGradNorm: options.maxGradNorm } : {}),
    logFn,
  };
}

/** One block of every parameter, never switching: plain training through BAdam's engine. */
function wholeModel(input: PlanInput, activeModules: readonly string[] = []): OptimizerPlan {
  return {
    kind: 'block',
    options: {
      ...common(input.options, input.logFn),
      partition: 'model',
      switchBlockEvery: -1,
      ...(activeModules.length > 0 ? { activeModules } : {}),
      verbose: 0,
    },
  };
}

/**
 * The method table: each method's label, memory-model method and optimizer plan. Runners look a method
 * up here instead of switching on it.
 */
export const METHODS: Readonly<Record<FineTuningMethod, MethodSpec>> = {
  block: {
    label: 'BAdam',
    memoryMethod: 'badam',
    needsLora: false,
    plan(input) {
      const { options, partition, parameters } = input;
      const blockPartition = {
        includeEmbedding: partition.includeEmbedding ?? false,
        includeLmHead: partition.includeLmHead ?? false,
        ...(partition.activeModules?.length ? { activeModules: partition.activeModules } : {}),
      };
      let k = options.switchBlockEvery;
      if (k === undefined && input.defaultSwitchBlockEvery !== 'suggest') k = input.defaultSwitchBlockEvery;
      if (k === undefined) {
        const blocks = BlockPartition.create(
          parameters.map((p) => p.name),
          blockPartition,
        ).blocks.length;
        k = suggestSwitchBlockEvery({
          examples: input.trainExamples,
          effectiveBatchSize: options.batchSize * options.gradientAccumulationSteps,
          blocks,
        });
        input.logFn(
          `BAdam: --${input.switchFlag} not set: using ${k} = min(max(round(n / (B * D)), 50), 100) for n = ${input.trainExamples}, B = ${options.batchSize * options.gradientAccumulationSteps}, D = ${blocks}`,
          'info',
        );
      }
      return {
        kind: 'block',
        options: {
          ...common(options, input.logFn),
          ...blockPartition,
          switchBlockEvery: k,
          switchMode: options.switchMode,
          ...(options.startBlock !== undefined ? { startBlock: options.startBlock } : {}),
          verbose: options.badamVerbose,
        },
      };
    },
  },
  full: {
    label: 'full Adam',
    memoryMethod: 'adam',
    needsLora: false,
    plan: (input) => wholeModel(input),
  },
  lora: {
    label: 'LoRA',
    memoryMethod: 'lora',
    needsLora: true,
    // LoRA mode: only the adapters (and the model's always-trained modules, e.g. a task head) train.
    plan: (input) => wholeModel(input, input.partition.activeModules),
  },
  sparse: {
    label: 'BAdam ratio',
    memoryMethod: 'ratio',
    needsLora: false,
    plan(input) {
      const { options, partition } = input;
      return {
        kind: 'ratio',
        options: {
          updateRatio: options.updateRatio,
          maskMode: options.maskMode,
          switchBlockEvery: options.switchBlockEvery ?? 100,
          learningRate: options.learningRate,
          betas: options.adamBetas,
          epsilon: options.adamEpsilon,
          seed: options.seed,
          includeEmbedding: partition.includeEmbedding ?? false,
          includeLmHead: partition.includeLmHead ?? false,
          verbose: options.badamVerbose >= 1 ? 1 : 0,
          logFn: input.logFn,
        },
        gradientAccumulationSteps: options.gradientAccumulationSteps,
        clipGradNorm: options.maxGradNorm > 0 ? options.maxGradNorm : undefined,
      };
    },
  },
};

/**
 * The parameter names trained together under a plan: per block for a BlockOptimizer (the active modules
 * in each), one group for the ratio (all its parameters take gradients at every step).
 */
export function trainedGroups(plan: OptimizerPlan, parameters: readonly NamedParameterInfo[]): string[][] {
  const names = parameters.map((p) => p.name);
  if (plan.kind === 'ratio') {
    const {
      learningRate: _lr,
      betas: _b,
      epsilon: _e,
      verbose: _verbose,
      logFn: _log,
      ...maskOptions
    } = plan.options;
    return [new UpdateMaskSchedule(parameters, maskOptions).parameters.map((p) => p.name)];
  }
  const o = plan.options;
  const partition = BlockPartition.create(names, {
    ...(o.blockPrefixList !== undefined ? { blockPrefixList: o.blockPrefixList } : {}),
    ...(o.partition !== undefined ? { preset: o.partition } : {}),
    ...(o.partition !== 'model'
      ? { includeEmbedding: o.includeEmbedding, includeLmHead: o.includeLmHead }
      : {}),
    ...(o.activeModules !== undefined ? { activeModules: o.activeModules } : {}),
  });
  return partition.eligibleBlocks.map((b) => partition.trainableNamesOf(b));
}

/** Elements trained at once: the largest of the plan's {@link trainedGroups}. */
export function trainedElements(
  groups: readonly (readonly string[])[],
  parameters: readonly NamedParameterInfo[],
): number {
  const sizes = new Map(parameters.map((p) => [p.name, numel(p.shape)]));
  return Math.max(...groups.map((g) => g.reduce((n, name) => n + sizes.get(name)!, 0)));
}

/**
 * Core's memory model for a run of `method`: the weights, the method's masters / gradients / optimizer
 * state (BAdam: for the plan's {@link trainedGroups}; LoRA: adapters on the weights that have them), and the
 * activations the runner estimated.
 */
export function estimateRunMemory(
  method: FineTuningMethod,
  groups: readonly (readonly string[])[],
  parameters: readonly NamedParameterInfo[],
  activationBytes: number,
  options: Pick<RunOptions, 'updateRatio' | 'maskMode' | 'loraRank'>,
): MemoryEstimate {
  const base = parameters.filter((p) => !p.name.includes('lora_'));
  switch (METHODS[method].memoryMethod) {
    case 'badam':
      return estimateMemory({
        method: 'badam',
        parameters,
        activationBytes,
        blocks: groups,
      });
    case 'ratio':
      return estimateMemory({
        method: 'ratio',
        parameters,
        activationBytes,
        updateRatio: options.updateRatio,
        maskMode: options.maskMode,
      });
    case 'lora': {
      // peft names: <module>.lora_A.<adapter>.weight adapts <module>.weight (or <module>.base_layer.weight).
      const targets = new Set(
        parameters
          .map((p) => /^(.*)\.lora_A\./.exec(p.name)?.[1])
          .filter((m): m is string => m !== undefined),
      );
      return estimateMemory({
        method: 'lora',
        parameters: base,
        activationBytes,
        loraRank: options.loraRank,
        loraTargets: base
          .map((p) => p.name)
          .filter((n) => targets.has(n.replace(/(\.base_layer)?\.weight$/, ''))),
      });
    }
    case 'adam':
      return estimateMemory({ method: 'adam', parameters, activationBytes });
  }
}
