import { TRAINING_DEFAULTS } from '../defaults.js';
import { BadamOptionError, BadamStateError } from '../errors.js';
import { formatCount } from '../format.js';
import { type NamedParameterInfo, numel, validateNamedParameters } from '../parameters.js';
import { type Block, BlockPartition } from '../partition/block-partition.js';
import { isNoDecayParameter } from '../partition/parameter-roles.js';
import type { BlockPartitionPreset } from '../partition/presets.js';
import {
  BlockSchedule,
  type BlockScheduleState,
  type SwitchMode,
  validateSwitchBlockEvery,
} from '../schedule/block-schedule.js';
import {
  optionWithDeprecatedName,
  rejectUnknownOptions,
  requireInteger,
  requireNumber,
  requireOneOf,
} from '../validation.js';
import type { BlockActivation, BlockBackend, TrainableParameter } from './block-backend.js';
import { GradientAccumulation } from './gradient-accumulation.js';
import { consoleLog, type LogFn } from './log.js';
import { isOptimizerDescription, resolveOptimizerDescription } from './optimizer-description.js';

/** Options of a {@link BlockOptimizer}, named as PyTorch BAdam's `BlockOptimizer` arguments in camelCase. */
export interface BlockOptimizerOptions<TBaseOptimizer = unknown> {
  /**
   * The optimizer each active block is trained with; passed to the backend, which starts it fresh on every
   * activation. Every backend accepts an {@link OptimizerDescription} (`{ type: 'adamw', ... }`, validated
   * here); a backend may accept its own kind too (@badam/tfjs: any tf.Optimizer).
   */
  baseOptimizer: TBaseOptimizer;
  /** The model's parameters in model order: name, shape and storage dtype. */
  namedParameters: readonly NamedParameterInfo[];
  /**
   * Learning rate of the first step; change it any time with {@link BlockOptimizer.lr}. Default: the
   * optimizer description's `learningRate`.
   */
  learningRate?: number;
  /** @deprecated The old name of `learningRate` (BlockOptimizerRatio's); use `learningRate`. */
  lr?: number;
  /** Explicit blocks: one array of name prefixes per block. Default: inferred with `partition`. */
  blockPrefixList?: readonly (readonly string[])[];
  /** Inferred partition when `blockPrefixList` is absent: `'layer'` (default), `'module'`, `'matrix'` or `'model'` (one block). */
  partition?: BlockPartitionPreset;
  /** K: optimizer steps per block before switching; -1 never switches. Default 50. */
  switchBlockEvery?: number;
  /** @deprecated The old name of `switchBlockEvery` (BlockOptimizerRatio's); use `switchBlockEvery`. */
  switchEvery?: number;
  /** Block order: `'ascending'` (default), `'descending'`, `'random'`, `'fixed'`. */
  switchMode?: SwitchMode;
  /** The first block (its index in the partition), honoured in every mode. */
  startBlock?: number;
  /** Prefixes of parameters trainable in every block (e.g. a task head). Default none. */
  activeModules?: readonly string[];
  /** Inferred partition: a block for the embeddings. Default false. */
  includeEmbedding?: boolean;
  /** Inferred partition: one last block for the final norm, `lm_head` and other non-layer parameters. Default false. */
  includeLmHead?: boolean;
  /** 0: warnings only; 1: partition summary, frozen parameters and block switches; 2: also every trainable parameter. Default 1. */
  verbose?: 0 | 1 | 2;
  /** Where messages go. Default: console. */
  logFn?: LogFn;
  /** Seed of the random block order. Default 42. */
  seed?: number;
  /** Micro-batches per optimizer step; K counts optimizer steps. Default 1. */
  gradientAccumulationSteps?: number;
  /**
   * Clip the mean gradient of each update to this global L2 norm (as `torch.nn.utils.clip_grad_norm_`),
   * folded into the update's gradient scale. Default: no clipping.
   */
  clipGradNorm?: number;
}

const OPTION_NAMES = [
  'baseOptimizer',
  'namedParameters',
  'learningRate',
  'lr',
  'switchEvery',
  'clipGradNorm',
  'blockPrefixList',
  'partition',
  'switchBlockEvery',
  'switchMode',
  'startBlock',
  'activeModules',
  'includeEmbedding',
  'includeLmHead',
  'verbose',
  'logFn',
  'seed',
  'gradientAccumulationSteps',
] as const;

/** What {@link BlockOptimizer.step} did. */
export interface StepOutcome {
  /** False while gradients are still being accumulated (the micro-batch was counted, no update ran). */
  readonly applied: boolean;
  /** True when the update completed the block's K steps and a block was (re)activated. */
  readonly switched: boolean;
  /** True in `fixed` mode when the update completed K steps and the block started a new sub-problem. */
  readonly restarted: boolean;
  /** Global L2 norm of the update's mean gradient before clipping (when clipping is on). */
  readonly gradNorm?: number;
  /** Optimizer steps taken so far in the run. */
  readonly globalStep: number;
  /** The block active after this call. */
  readonly activeBlock: number;
  /** The block the update was applied to (equal to `activeBlock` unless `switched`). */
  readonly updatedBlock: number;
}

/** Plain-data state of a {@link BlockOptimizer} for checkpoints. */
export interface BlockOptimizerState {
  readonly version: 1;
  /** Fingerprint of the partition the state belongs to. */
  readonly partition: string;
  readonly globalStep: number;
  readonly stepsSinceActivation: number;
  readonly microBatches: number;
  readonly gradientAccumulationSteps: number;
  readonly lr: number;
  /** Partition index of the active block. */
  readonly activeBlock: number;
  readonly schedule: BlockScheduleState;
}

/**
 * The BlockOptimizer engine: BAdam's block coordinate descent, independent of any tensor library.
 *
 * It owns the partition, the schedule, `activeModules`, LoRA mode, the no-decay rule for biases and norm
 * weights, the learning rate, gradient-accumulation counting and resumable state, and drives a
 * {@link BlockBackend} that owns the tensors. Backends (`@badam/tfjs`, `@badam/cuda`) wrap it in their
 * own `BlockOptimizer` class; use this one directly to add a backend.
 *
 * @example
 * ```ts
 * const optimizer = new BlockOptimizer(
 *   { baseOptimizer: { type: 'adamw', learningRate: 1e-5 }, namedParameters, switchBlockEvery: 100, switchMode: 'random' },
 *   backend,
 * );
 * for (const batch of batches) {
 *   backend.accumulateGradients(gradientsOf(batch, optimizer.trainableNames)); // the active block's only
 *   optimizer.step();
 * }
 * ```
 */
export class BlockOptimizer<
  TBaseOptimizer = unknown,
  TBackend extends BlockBackend<TBaseOptimizer> = BlockBackend<TBaseOptimizer>,
> {
  /** The validated block partition. */
  readonly partition: BlockPartition;
  /** The backend that owns the tensors. */
  readonly backend: TBackend;
  /** K. */
  readonly switchBlockEvery: number;
  /** The block order. */
  readonly switchMode: SwitchMode;
  /** Micro-batches per optimizer step. */
  readonly gradientAccumulationSteps: number;
  /** The global gradient norm updates are clipped to, or undefined. */
  readonly clipGradNorm: number | undefined;
  /** The base optimizer as given (an optimizer description with its defaults filled in). */
  readonly baseOptimizer: TBaseOptimizer;
  private readonly verbose: 0 | 1 | 2;
  private readonly logFn: LogFn;
  private readonly parameters: ReadonlyMap<string, NamedParameterInfo>;
  /** Partition indices of the blocks the schedule visits; the schedule's block i is `eligible[i]`. */
  private readonly eligible: readonly number[];
  private schedule: BlockSchedule;
  private activation: BlockActivation<TBaseOptimizer> | undefined;
  private trainable: ReadonlySet<string> = new Set();
  private learningRate: number;
  private readonly accumulation: GradientAccumulation;
  private globalStep = 0;
  private stepsSinceActivation = 0;

  constructor(
    options: BlockOptimizerOptions<NoInfer<TBaseOptimizer>>,
    backend: TBackend & BlockBackend<TBaseOptimizer>,
  ) {
    if (typeof options !== 'object' || options === null) {
      throw new BadamOptionError('options', options, 'an object of BlockOptimizer options');
    }
    rejectUnknownOptions('BlockOptimizer options', options, OPTION_NAMES);
    if (options.logFn !== undefined && typeof options.logFn !== 'function') {
      throw new BadamOptionError('logFn', options.logFn, 'a function (message, level) => void');
    }
    this.logFn = options.logFn ?? consoleLog;
    const warn = (message: string) => this.logFn(`BAdam warning: ${message}`, 'warn');
    if (options.baseOptimizer === undefined || options.baseOptimizer === null) {
      throw new BadamOptionError(
        'baseOptimizer',
        options.baseOptimizer,
        "the optimizer to train each block with, e.g. { type: 'adamw', weightDecay: 0.01 }",
      );
    }
    if (typeof backend !== 'object' || backend === null || typeof backend.activateBlock !== 'function') {
      throw new BadamOptionError('backend', backend, 'an object implementing BlockBackend');
    }
    const named = validateNamedParameters(options.namedParameters);
    this.backend = backend;
    const description = isOptimizerDescription(options.baseOptimizer)
      ? resolveOptimizerDescription(options.baseOptimizer, warn)
      : undefined;
    this.baseOptimizer = (description ?? options.baseOptimizer) as TBaseOptimizer;
    this.parameters = new Map(named.map((p) => [p.name, p]));
    const learningRate = optionWithDeprecatedName(options, 'learningRate', 'lr', warn);
    // The description's learning rate was validated with it.
    const fallback = description?.learningRate;
    if (learningRate === undefined && fallback === undefined) {
      throw new BadamOptionError(
        'learningRate',
        undefined,
        'a finite number >= 0',
        "set it here or as the optimizer description's learningRate",
      );
    }
    this.learningRate =
      learningRate === undefined ? fallback! : requireNumber('learningRate', learningRate, { min: 0 });
    this.switchBlockEvery = validateSwitchBlockEvery(
      optionWithDeprecatedName(options, 'switchBlockEvery', 'switchEvery', warn) ??
        TRAINING_DEFAULTS.switchBlockEvery,
    );
    this.switchMode = requireOneOf('switchMode', options.switchMode ?? TRAINING_DEFAULTS.switchMode, [
      'ascending',
      'descending',
      'random',
      'fixed',
    ] as const);
    this.verbose = requireOneOf('verbose', options.verbose ?? TRAINING_DEFAULTS.verbose, [0, 1, 2] as const);
    this.accumulation = new GradientAccumulation({
      steps: options.gradientAccumulationSteps,
      maxGradNorm: options.clipGradNorm,
    });
    this.gradientAccumulationSteps = this.accumulation.steps;
    this.clipGradNorm = this.accumulation.maxGradNorm;
    const seed = requireInteger('seed', options.seed ?? TRAINING_DEFAULTS.seed, { min: 0 });

    this.partition = BlockPartition.create(
      named.map((p) => p.name),
      {
        blockPrefixList: options.blockPrefixList,
        preset: options.partition,
        includeEmbedding: options.includeEmbedding,
        includeLmHead: options.includeLmHead,
        activeModules: options.activeModules,
      },
    );
    for (const warning of this.partition.warnings) warn(warning);
    this.eligible = this.partition.eligibleBlocks;
    if (this.eligible.length === 0) {
      throw new BadamOptionError(
        'namedParameters',
        `${named.length} parameters`,
        'a model with at least one block that has trainable parameters',
        this.partition.loraMode ? 'LoRA mode is on but no block contains a lora parameter' : undefined,
      );
    }

    let startPosition: number | undefined;
    if (options.startBlock !== undefined) {
      const start = requireInteger('startBlock', options.startBlock, {
        min: 0,
        max: this.partition.blocks.length - 1,
      });
      startPosition = this.eligible.indexOf(start);
      if (startPosition < 0) {
        throw new BadamOptionError(
          'startBlock',
          start,
          `a block with trainable parameters: one of ${this.eligible.join(', ')}`,
          `block ${start} (${this.partition.blocks[start]?.prefixes.join(', ')}) has none${
            this.partition.loraMode ? ' in LoRA mode' : ''
          }`,
        );
      }
    }
    this.schedule = new BlockSchedule({
      blockCount: this.eligible.length,
      switchMode: this.switchMode,
      switchBlockEvery: this.switchBlockEvery,
      startBlock: startPosition,
      seed,
    });
    this.logPartition();
    this.activate(this.eligible[this.schedule.currentBlock]!);
  }

  /** What trains how, in a few words: `4 blocks, switch every 50 steps (ascending)`. */
  get summary(): string {
    const k = this.switchBlockEvery === -1 ? 'never' : `${this.switchBlockEvery} steps`;
    return `${this.partition.blocks.length} blocks, switch every ${k} (${this.switchMode})`;
  }

  /** The model's parameters (name, shape, storage dtype), in model order. */
  get namedParameters(): readonly NamedParameterInfo[] {
    return [...this.parameters.values()];
  }

  /** The learning rate the next update uses. Schedules set it before each step. */
  get lr(): number {
    return this.learningRate;
  }

  set lr(value: number) {
    this.learningRate = requireNumber('lr', value, { min: 0 });
  }

  /** The active block. */
  get activeBlock(): Block {
    return this.partition.blocks[this.requireActivation().blockIndex]!;
  }

  /** Optimizer steps taken so far in the run. */
  get globalStepCount(): number {
    return this.globalStep;
  }

  /** Optimizer steps taken since the active block was activated. */
  get stepsInBlock(): number {
    return this.stepsSinceActivation;
  }

  /** Micro-batches counted toward the next optimizer step. */
  get pendingMicroBatches(): number {
    return this.accumulation.pending;
  }

  /** Completed block epochs. */
  get blockEpoch(): number {
    return this.schedule.blockEpoch;
  }

  /** Partition indices of the blocks still to come in this block epoch, the active one first. */
  upcomingBlocks(): number[] {
    return this.schedule.remainingInEpoch().map((i) => this.eligible[i]!);
  }

  /** The parameters trained now (active block, then active modules), with their weight-decay flag. */
  get trainableParameters(): readonly TrainableParameter[] {
    return this.requireActivation().parameters;
  }

  /** Names of the parameters trained now: compute gradients for these only. */
  get trainableNames(): string[] {
    return this.requireActivation().parameters.map((p) => p.name);
  }

  /** True when `name` is trained now. */
  isTrainable(name: string): boolean {
    return this.trainable.has(name);
  }

  /**
   * Counts one micro-batch whose gradients the backend has accumulated. Every
   * `gradientAccumulationSteps`-th call applies the update on the backend (the mean gradient, clipped
   * when `clipGradNorm` is set), advances the schedule and, after the block's K-th update, deactivates it
   * and activates the next block (in `fixed` mode: the same block afresh).
   */
  step(): StepOutcome {
    const activation = this.requireActivation();
    if (!this.accumulation.count()) {
      return {
        applied: false,
        switched: false,
        restarted: false,
        globalStep: this.globalStep,
        activeBlock: activation.blockIndex,
        updatedBlock: activation.blockIndex,
      };
    }
    const { gradientScale, gradNorm } = this.accumulation.updateScale(() =>
      this.backend.gradientSumOfSquares(),
    );
    this.backend.applyUpdate({
      blockIndex: activation.blockIndex,
      lr: this.learningRate,
      stepInBlock: this.stepsSinceActivation + 1,
      globalStep: this.globalStep + 1,
      gradientScale,
    });
    this.globalStep += 1;
    this.stepsSinceActivation += 1;
    const advance = this.schedule.advance();
    if (advance.switched || advance.restarted) {
      const next = this.eligible[advance.to]!;
      if (this.verbose >= 1) {
        this.logFn(
          advance.switched
            ? `BAdam: step ${this.globalStep}: block ${activation.blockIndex} done after ${this.stepsSinceActivation} steps, ` +
                `switching to block ${next} (${this.partition.blocks[next]!.prefixes.join(', ')})`
            : `BAdam: step ${this.globalStep}: block ${activation.blockIndex} done after ${this.stepsSinceActivation} steps, ` +
                'starting a new sub-problem on it (fixed mode: fresh optimizer state, masters from the weights)',
          'info',
        );
      }
      this.deactivate();
      this.activate(next);
    }
    return {
      applied: true,
      switched: advance.switched,
      restarted: advance.restarted,
      globalStep: this.globalStep,
      activeBlock: this.requireActivation().blockIndex,
      updatedBlock: activation.blockIndex,
      ...(gradNorm !== undefined ? { gradNorm } : {}),
    };
  }

  /**
   * Forgets the micro-batches counted toward the next update and has the backend drop their gradients:
   * the current step starts over (used to skip a micro-batch whose loss is NaN or infinite).
   */
  discardPendingGradients(): void {
    this.requireActivation();
    this.accumulation.reset();
    this.backend.discardGradients();
  }

  /** Plain-data state (step counts, learning rate, schedule position and order, RNG) for checkpoints. */
  state(): BlockOptimizerState {
    return {
      version: 1,
      partition: this.partition.fingerprint(),
      globalStep: this.globalStep,
      stepsSinceActivation: this.stepsSinceActivation,
      microBatches: this.accumulation.pending,
      gradientAccumulationSteps: this.gradientAccumulationSteps,
      lr: this.learningRate,
      activeBlock: this.requireActivation().blockIndex,
      schedule: this.schedule.state(),
    };
  }

  /**
   * Restores `state()`: the schedule continues the identical block order, and the saved block is
   * activated afresh on the backend (the backend restores its own optimizer moments, if it saved them).
   */
  loadState(state: BlockOptimizerState): void {
    if (typeof state !== 'object' || state === null || state.version !== 1) {
      throw new BadamStateError(
        `BlockOptimizer state must be an object with version 1, got ${JSON.stringify(state)}`,
      );
    }
    const fingerprint = this.partition.fingerprint();
    if (state.partition !== fingerprint) {
      throw new BadamStateError(
        `BlockOptimizer state belongs to a different block partition (${state.partition}, this one is ${fingerprint}); ` +
          'resume with the same model, blockPrefixList / partition, includeEmbedding, includeLmHead and activeModules ' +
          "(a runner's checkpoint resumes with the fine-tuning method that wrote it: full Adam and LoRA are one block)",
      );
    }
    const mismatch = (what: string, saved: unknown, now: unknown) =>
      new BadamStateError(
        `BlockOptimizer state was saved with ${what} = ${saved}, this optimizer has ${now}; resume with the same value`,
      );
    if (state.schedule?.switchBlockEvery !== this.switchBlockEvery) {
      throw mismatch('switchBlockEvery', state.schedule?.switchBlockEvery, this.switchBlockEvery);
    }
    if (state.schedule.switchMode !== this.switchMode) {
      throw mismatch('switchMode', state.schedule.switchMode, this.switchMode);
    }
    if (state.gradientAccumulationSteps !== this.gradientAccumulationSteps) {
      throw mismatch(
        'gradientAccumulationSteps',
        state.gradientAccumulationSteps,
        this.gradientAccumulationSteps,
      );
    }
    if (state.microBatches !== 0) {
      throw new BadamStateError(
        `BlockOptimizer state was saved in the middle of gradient accumulation (${state.microBatches} of ` +
          `${this.gradientAccumulationSteps} micro-batches) and the accumulated gradients are not part of it; save at step boundaries`,
      );
    }
    const schedule = BlockSchedule.fromState(state.schedule);
    if (schedule.blockCount !== this.eligible.length) {
      throw mismatch('block count', schedule.blockCount, this.eligible.length);
    }
    if (this.eligible[schedule.currentBlock] !== state.activeBlock) {
      throw new BadamStateError(
        `BlockOptimizer state is inconsistent: its schedule points at block ${this.eligible[schedule.currentBlock]} but activeBlock is ${state.activeBlock}`,
      );
    }
    const globalStep = requireInteger('state.globalStep', state.globalStep, { min: 0 });
    const stepsSinceActivation = requireInteger('state.stepsSinceActivation', state.stepsSinceActivation, {
      min: 0,
    });
    const lr = requireNumber('state.lr', state.lr, { min: 0 });
    this.deactivate();
    this.schedule = schedule;
    this.globalStep = globalStep;
    this.stepsSinceActivation = stepsSinceActivation;
    this.accumulation.reset();
    this.learningRate = lr;
    this.activate(state.activeBlock, stepsSinceActivation);
  }

  /** Deactivates the active block, freeing its masters, gradients and optimizer state on the backend. */
  dispose(): void {
    this.deactivate();
  }

  private activate(blockIndex: number, stepsSinceActivation = 0): void {
    const block = this.partition.blocks[blockIndex]!;
    const names = this.partition.trainableNamesOf(blockIndex);
    const activeModuleNames = new Set(this.partition.activeModuleNames);
    const parameters: TrainableParameter[] = names.map((name) => {
      const info = this.parameters.get(name)!;
      return { ...info, weightDecay: !isNoDecayParameter(name), activeModule: activeModuleNames.has(name) };
    });
    const activation: BlockActivation<TBaseOptimizer> = {
      blockIndex,
      prefixes: block.prefixes,
      parameters,
      baseOptimizer: this.baseOptimizer,
    };
    this.backend.activateBlock(activation);
    this.activation = activation;
    this.trainable = new Set(names);
    this.stepsSinceActivation = stepsSinceActivation;
    if (this.verbose >= 2) {
      const lines = parameters.map(
        (p) => `  ${p.name} [${p.shape.join(', ')}] ${p.dtype}${p.weightDecay ? '' : ' (no decay)'}`,
      );
      this.logFn(`BAdam: block ${blockIndex} trainable parameters:\n${lines.join('\n')}`, 'info');
    }
  }

  private deactivate(): void {
    if (this.activation === undefined) return;
    this.backend.deactivateBlock(this.activation);
    this.activation = undefined;
    this.trainable = new Set();
  }

  private requireActivation(): BlockActivation<TBaseOptimizer> {
    if (this.activation === undefined) {
      throw new BadamStateError('this BlockOptimizer was disposed; create a new one to keep training');
    }
    return this.activation;
  }

  private logPartition(): void {
    if (this.verbose < 1) return;
    const { blocks, frozenNames, activeModuleNames, loraMode } = this.partition;
    const sizes = blocks.map((b) =>
      b.trainableNames.reduce((n, name) => n + numel(this.parameters.get(name)!.shape), 0),
    );
    const lines = [
      `BAdam: ${blocks.length} blocks, switch every ${this.switchBlockEvery === -1 ? 'never' : `${this.switchBlockEvery} steps`}, ` +
        `mode ${this.switchMode}; trainable elements per block ${formatCount(Math.min(...sizes))}..${formatCount(Math.max(...sizes))}`,
    ];
    if (loraMode) {
      const skipped = blocks.length - this.eligible.length;
      lines.push(`BAdam: LoRA mode: only lora parameters train; ${skipped} block(s) without any are skipped`);
    }
    if (activeModuleNames.length > 0) {
      lines.push(`BAdam: trainable in every block (activeModules): ${activeModuleNames.join(', ')}`);
    }
    if (frozenNames.length > 0) {
      lines.push(`BAdam: ${frozenNames.length} frozen parameter(s) in no block: ${frozenNames.join(', ')}`);
    }
    this.logFn(lines.join('\n'), 'info');
  }
}
