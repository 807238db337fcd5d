import { dirname, resolve } from 'node:path';
import type { FineTuningMethod, FlagSpec, FlagValues, LrScheduleType, SwitchMode } from '@badam/core';
import { parseFlagsExplicit, TRAINING_DEFAULTS, UsageError } from '@badam/core';
import type { TfjsBackendChoice } from '@badam/tfjs';
import { METHOD_FLAGS } from './method-flags.js';
import type { RunBackendName, RunFlagName } from './run-flags.js';

/** The options every runner resolves from the shared flags, whatever it calls them on its command line. */
export interface RunOptions {
  method: FineTuningMethod;
  backend: RunBackendName;
  /** K; undefined: the runner's default (BAdam: core's suggestion or the runner's number; sparse: 100). */
  switchBlockEvery: number | undefined;
  switchMode: SwitchMode;
  startBlock: number | undefined;
  /** 0 quiet, 1 partition and switches, 2 trainable parameter lists. */
  badamVerbose: 0 | 1 | 2;
  updateRatio: number;
  maskMode: 'adjacent' | 'scatter';
  loraRank: number;
  batchSize: number;
  evalBatchSize: number;
  gradientAccumulationSteps: number;
  learningRate: number;
  lrSchedulerType: LrScheduleType;
  warmupRatio: number;
  warmupSteps: number | undefined;
  weightDecay: number;
  /** Adam's beta1 and beta2 (`--adam_beta1`, `--adam_beta2`). */
  adamBetas: readonly [number, number];
  /** Adam's epsilon (`--adam_epsilon`). */
  adamEpsilon: number;
  maxGradNorm: number;
  numTrainEpochs: number;
  maxSteps: number | undefined;
  evalSteps: number | undefined;
  loggingSteps: number;
  /** The command line gave no `--logging_steps`: a short run logs more often than every 10 steps. */
  loggingStepsIsDefault: boolean;
  saveSteps: number | undefined;
  /** `--save_strategy`: every `saveSteps` (and the last step), each epoch, or never. */
  saveStrategy: SaveStrategy;
  /** Checkpoints kept; undefined keeps all (Hugging Face's default). */
  saveTotalLimit: number | undefined;
  /** Checkpoints hold the model only, nothing to resume from (`--save_only_model`). */
  saveOnlyModel: boolean;
  /** `--load_best_model_at_end`: the metric compared, and whether larger is better. */
  bestModel: { readonly metric: string; readonly greaterIsBetter: boolean } | undefined;
  /** Seed of the training data order (`--data_seed`); undefined: `seed` (whatever the run sets it to). */
  dataSeed: number | undefined;
  /** Integrations metrics go to besides trainer_log.jsonl (`--report_to`): only `tensorboard` is one here. */
  reportTo: readonly string[];
  /** Where TensorBoard's event files go (`--logging_dir`); undefined: `<outputDir>/runs/<date>_<host>`. */
  loggingDir: string | undefined;
  outputDir: string;
  /** True when the command line named no output directory (the runner's default is used). */
  outputDirIsDefault: boolean;
  overwriteOutputDir: boolean;
  resumeFromCheckpoint: string | undefined;
  /** Resume even where the command line's settings differ from the checkpoint's (`--force_resume`). */
  forceResume: boolean;
  plotLoss: boolean;
  seed: number;
  tfjsBackend: TfjsBackendChoice;
  nativeKernels: boolean;
  /**
   * The @badam/cuda device of a device backend: `--cuda_device` (the GPU ordinal, or `'cpu'` for the CPU
   * reference device) with `--backend cuda`, `'cpu-engine'` with `--backend cpu`.
   */
  cudaDevice: CudaDeviceChoice;
  /** Serve badam-board beside the run (`--board`). */
  board?: boolean;
  /** `--nproc_per_node`: ranks this machine starts (1: one process, no sharding). */
  nprocPerNode?: number;
  /** `--ddp_timeout`: seconds a collective waits for the other ranks. */
  ddpTimeout?: number;
}

/** When checkpoints are saved (Hugging Face's `save_strategy`). */
export type SaveStrategy = 'no' | 'steps' | 'epoch';

/** Where a device backend runs: a GPU ordinal, the CPU reference device, or the CPU engine (`--backend cpu`). */
export type CudaDeviceChoice = number | 'cpu' | 'cpu-engine';

/** Steps between log lines when the command line gives none, and the run is long enough. */
export const DEFAULT_LOGGING_STEPS = 10;

/** How one runner's command line names things, for parsing and for its error messages. */
export interface RunnerDialect {
  /** The command, e.g. `badam-llama`. */
  readonly name: string;
  /** The runner's spelling of shared flags (the `rename` it gave {@link runnerFlags}). */
  readonly rename?: Partial<Record<RunFlagName, string>>;
  /** How the command line picks these methods, e.g. `--finetuning_type block or sparse`. */
  describeMethods(methods: readonly FineTuningMethod[]): string;
  /** The runner's own flags that only some methods take, by the runner's names. */
  readonly methodFlags?: Readonly<Record<string, readonly FineTuningMethod[]>>;
}

/** The runner's name for a shared flag. */
export function flagName(dialect: Pick<RunnerDialect, 'rename'>, flag: RunFlagName): string {
  return dialect.rename?.[flag] ?? flag;
}

/** Per-runner values the shared flags do not carry. */
export interface RunOptionDefaults {
  /** Output directory when `--output_dir` is not given. */
  readonly outputDir: string;
  /** LoRA rank (from the runner's own flag). Default 8. */
  readonly loraRank?: number;
  /** BAdam's verbosity (from the runner's own flag). Default 1. */
  readonly badamVerbose?: 0 | 1 | 2;
}

/**
 * Every flag a runner gives a method that does not take it: `[flag as the runner spells it, the methods
 * that take it]`.
 */
function misplacedFlags(
  values: FlagValues,
  method: FineTuningMethod,
  dialect: RunnerDialect,
): Array<[string, readonly FineTuningMethod[]]> {
  const rows: Array<[string, readonly FineTuningMethod[]]> = [
    ...Object.entries(METHOD_FLAGS).map(
      ([flag, methods]) =>
        [flagName(dialect, flag as RunFlagName), methods] as [string, readonly FineTuningMethod[]],
    ),
    ...Object.entries(dialect.methodFlags ?? {}),
  ];
  return rows.filter(
    ([flag, methods]) => values[flag] !== undefined && values[flag] !== false && !methods.includes(method),
  );
}

/**
 * The shared flags' one validation: flags the chosen method does not take, K, the update ratio, resume
 * against overwrite. Errors are `UsageError`s that name the flag as the runner spells it and say
 * what to change.
 */
export function resolveRunOptions(
  values: FlagValues,
  method: FineTuningMethod,
  dialect: RunnerDialect,
  defaults: RunOptionDefaults,
): RunOptions {
  for (const [flag, methods] of misplacedFlags(values, method, dialect)) {
    throw new UsageError(
      `--${flag} applies to ${dialect.describeMethods(methods)}, but this run uses ${dialect.describeMethods([method])}: drop it or choose that method`,
    );
  }
  const get = (flag: RunFlagName) => values[flagName(dialect, flag)];
  const k = get('switch_block_every') as number | undefined;
  if (k !== undefined && k !== -1 && k < 1)
    throw new UsageError(`--${flagName(dialect, 'switch_block_every')} must be >= 1 or -1, got ${k}`);
  const outputDirFlag = get('output_dir') as string | undefined;
  if (outputDirFlag !== undefined && outputDirFlag.trim() === '')
    throw new UsageError(
      `--${flagName(dialect, 'output_dir')} is empty (an unset shell variable?): it would mean the current directory; name the directory to write to`,
    );
  const outputDir = outputDirFlag ?? defaults.outputDir;
  const resumeFromCheckpoint = resumePoint(get('resume_from_checkpoint') as string | undefined);
  // Resuming in place needs the directory as it is; a checkpoint of another directory may replace this one's.
  if (
    resumeFromCheckpoint !== undefined &&
    get('overwrite_output_dir') === true &&
    (resumeFromCheckpoint === 'true' || resolve(dirname(resumeFromCheckpoint)) === resolve(outputDir))
  ) {
    throw new UsageError(
      `--${flagName(dialect, 'resume_from_checkpoint')} and --${flagName(dialect, 'overwrite_output_dir')} contradict each other: resuming needs the output directory as it is`,
    );
  }
  let backend = get('backend') as RunBackendName;
  // --cuda_device names a device of --backend cuda: with auto it settles the choice.
  if (backend === 'auto' && get('cuda_device') !== undefined) backend = 'cuda';
  const betas = [get('adam_beta1') as number, get('adam_beta2') as number] as const;
  betas.forEach((beta, i) => {
    if (!(beta >= 0 && beta < 1))
      throw new UsageError(
        `--${flagName(dialect, i === 0 ? 'adam_beta1' : 'adam_beta2')} must be in [0, 1), got ${beta}`,
      );
  });
  const saveStrategy = ((get('save_strategy') as string | undefined) ?? 'steps') as SaveStrategy;
  return {
    method,
    backend,
    switchBlockEvery: k,
    switchMode: get('switch_mode') as SwitchMode,
    startBlock: get('start_block') as number | undefined,
    badamVerbose: defaults.badamVerbose ?? TRAINING_DEFAULTS.verbose,
    // The flags' own checks (parseFlags) ran; unset, the ratio takes core's defaults.
    updateRatio: (get('update_ratio') as number | undefined) ?? TRAINING_DEFAULTS.ratio.updateRatio,
    maskMode: ((get('mask_mode') as string | undefined) ??
      TRAINING_DEFAULTS.ratio.maskMode) as RunOptions['maskMode'],
    loraRank: defaults.loraRank ?? TRAINING_DEFAULTS.lora.rank,
    batchSize: get('per_device_train_batch_size') as number,
    evalBatchSize: get('per_device_eval_batch_size') as number,
    gradientAccumulationSteps: get('gradient_accumulation_steps') as number,
    learningRate: get('learning_rate') as number,
    lrSchedulerType: get('lr_scheduler_type') as LrScheduleType,
    warmupRatio: get('warmup_ratio') as number,
    warmupSteps: get('warmup_steps') as number | undefined,
    weightDecay: get('weight_decay') as number,
    adamBetas: betas,
    adamEpsilon: (get('adam_epsilon') as number | undefined) ?? TRAINING_DEFAULTS.adamw.epsilon,
    maxGradNorm: get('max_grad_norm') as number,
    numTrainEpochs: get('num_train_epochs') as number,
    maxSteps: get('max_steps') as number | undefined,
    evalSteps: get('eval_steps') as number | undefined,
    loggingSteps: (get('logging_steps') as number | undefined) ?? DEFAULT_LOGGING_STEPS,
    loggingStepsIsDefault: get('logging_steps') === undefined,
    saveSteps: get('save_steps') as number | undefined,
    saveStrategy,
    saveTotalLimit: get('save_total_limit') as number | undefined,
    saveOnlyModel: get('save_only_model') === true,
    bestModel: bestModelOf(values, dialect, saveStrategy),
    dataSeed: get('data_seed') as number | undefined,
    reportTo: reportToOf(get('report_to') as string | undefined),
    loggingDir: get('logging_dir') as string | undefined,
    outputDir,
    outputDirIsDefault: get('output_dir') === undefined,
    overwriteOutputDir: get('overwrite_output_dir') as boolean,
    resumeFromCheckpoint,
    forceResume: (get('force_resume') as boolean | undefined) ?? false,
    plotLoss: get('plot_loss') as boolean,
    seed: get('seed') as number,
    tfjsBackend: get('tfjs_backend') as TfjsBackendChoice,
    nativeKernels: get('native_kernels') as boolean,
    cudaDevice: cudaDeviceOf(get('cuda_device') as string | undefined, backend, dialect),
    board: get('board') === true,
    nprocPerNode: nprocPerNodeOf(get('nproc_per_node') as number | undefined, backend, dialect),
    ddpTimeout: (get('ddp_timeout') as number | undefined) ?? 1800,
  };
}

/**
 * `--nproc_per_node`, refused above 1 on `--backend tfjs` (tfjs trains in one process): the ranks shard the
 * model on @badam/cuda's devices (`cuda`: a GPU each, or with `--cuda_device cpu` the CPU reference device;
 * `cpu`: the CPU engine; `auto`: whichever of the two it picks).
 */
function nprocPerNodeOf(value: number | undefined, backend: RunBackendName, dialect: RunnerDialect): number {
  const n = value ?? 1;
  if (n > 1 && backend === 'tfjs')
    throw new UsageError(
      `--${flagName(dialect, 'nproc_per_node')} ${n} shards the model over processes on --${flagName(dialect, 'backend')} cuda or cpu (@badam/cuda's devices), but this run uses --${flagName(dialect, 'backend')} tfjs, which trains in one process: use --${flagName(dialect, 'backend')} cpu (or cuda) or drop --${flagName(dialect, 'nproc_per_node')}`,
    );
  return n;
}

/**
 * `--load_best_model_at_end`'s metric as the evaluation logs it (`eval_loss` for `loss`) and its direction,
 * as Hugging Face resolves them; refused where no checkpoint would be saved to load it from.
 */
function bestModelOf(
  values: FlagValues,
  dialect: RunnerDialect,
  saveStrategy: SaveStrategy,
): RunOptions['bestModel'] {
  const get = (flag: RunFlagName) => values[flagName(dialect, flag)];
  const metricFlag = `--${flagName(dialect, 'metric_for_best_model')}`;
  if (get('load_best_model_at_end') !== true) return undefined;
  if (saveStrategy === 'no' || (saveStrategy === 'steps' && get('save_steps') === undefined))
    throw new UsageError(
      `--${flagName(dialect, 'load_best_model_at_end')} loads the best checkpoint, but this run saves none: add --${flagName(dialect, 'save_steps')} N (a multiple of the evaluation interval) or --${flagName(dialect, 'save_strategy')} epoch`,
    );
  const given = (get('metric_for_best_model') as string | undefined) ?? 'loss';
  if (!/^[A-Za-z0-9_-]+$/.test(given))
    throw new UsageError(
      `${metricFlag} must be a metric name such as loss or accuracy, got ${JSON.stringify(given)}`,
    );
  const metric = given.startsWith('eval_') ? given : `eval_${given}`;
  const greater = get('greater_is_better') as boolean | undefined;
  return { metric, greaterIsBetter: greater ?? !/loss$/.test(metric) };
}

/** `--report_to`'s comma-separated list; `none` (alone) is the empty list, `all` is every integration here. */
function reportToOf(value: string | undefined): string[] {
  const names = (value ?? 'none')
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);
  if (names.includes('none')) return [];
  return [...new Set(names.map((n) => (n === 'all' ? 'tensorboard' : n)))];
}

/**
 * `--resume_from_checkpoint` as Hugging Face's Trainer and LLaMA-Factory's YAML take it: `true` (any case)
 * for the newest checkpoint, `false` (any case) or nothing for none, else a path.
 */
function resumePoint(value: string | undefined): string | undefined {
  const word = value?.trim().toLowerCase();
  if (word === undefined || word === 'false') return undefined;
  return word === 'true' ? 'true' : value;
}

/**
 * `--cuda_device` as a {@link CudaDeviceChoice}, refused without `--backend cuda` and when it names no device;
 * `--backend cpu` is the CPU engine. (The methods @badam/cuda cannot train yet are its own to say:
 * `prepareRunBackend` asks it, before any work.)
 */
function cudaDeviceOf(
  value: string | undefined,
  backend: RunBackendName,
  dialect: RunnerDialect,
): CudaDeviceChoice {
  const flag = `--${flagName(dialect, 'cuda_device')}`;
  if (backend !== 'cuda') {
    if (value !== undefined)
      throw new UsageError(
        `${flag} ${value} chooses the device of --${flagName(dialect, 'backend')} cuda, but this run uses --${flagName(dialect, 'backend')} ${backend}: drop it or add --${flagName(dialect, 'backend')} cuda`,
      );
    return backend === 'cpu' ? 'cpu-engine' : 0;
  }
  if (value === undefined) return 0;
  const text = value.trim().toLowerCase();
  if (text === 'cpu') return 'cpu';
  if (/^\d+$/.test(text)) return Number(text);
  throw new UsageError(
    `${flag} must be a GPU ordinal (0, 1, ...) or cpu (the CPU reference device), got ${JSON.stringify(value)}`,
  );
}

/**
 * Fills flags the command line left unset with an embedded default's values, skipping those the run's
 * method does not take (BAdam's K on a full-Adam run), and `overwrite_output_dir` when the run resumes.
 */
export function applyEmbeddedDefaults(
  values: FlagValues,
  explicit: ReadonlySet<string>,
  defaults: Readonly<Record<string, string | number | boolean>>,
  method: FineTuningMethod,
  dialect: RunnerDialect,
): void {
  const resuming = explicit.has(flagName(dialect, 'resume_from_checkpoint'));
  for (const [name, value] of Object.entries(defaults)) {
    if (explicit.has(name)) continue;
    if (name === flagName(dialect, 'overwrite_output_dir') && resuming) continue; // resuming keeps the directory
    if (misplacedFlags({ [name]: value }, method, dialect).length > 0) continue;
    values[name] = value;
  }
}

/** How a runner reads its command line: its flags, what makes a run the embedded default, and its options. */
export interface RunnerCommandSpec<TOptions extends RunOptions> {
  readonly flags: Readonly<Record<string, FlagSpec>>;
  readonly dialect: RunnerDialect;
  /** True when the command line names no model or data of its own: the embedded default runs. */
  isEmbedded(values: FlagValues): boolean;
  /** The embedded default's flag values, given what the command line chose (e.g. no BAdam flags for full Adam). */
  embeddedDefaults(
    values: FlagValues,
    explicit: ReadonlySet<string>,
  ): Readonly<Record<string, string | number | boolean>>;
  /** The method the flags pick. */
  methodOf(values: FlagValues): FineTuningMethod;
  /** The runner's options from the final flag values (its own validation, then the kit's). */
  resolve(values: FlagValues): TOptions;
  /**
   * Turns other tools' spellings into the runner's own flags before anything else reads them (LLaMA-Factory's
   * `--use_badam --badam_mode layer` into `--finetuning_type block`), in place, updating `explicit` too;
   * returns lines to tell the user (flags accepted but ignored). Contradictions are `UsageError`s.
   */
  normalize?(values: FlagValues, explicit: Set<string>): string[];
}

/**
 * Parses a runner's command line: flags (unknown ones suggest the nearest), the embedded default's values
 * for what the command line leaves unset, then the runner's options.
 */
export function parseRunnerCommand<TOptions extends RunOptions>(
  argv: readonly string[],
  spec: RunnerCommandSpec<TOptions>,
): { options: TOptions; embedded: boolean; help: boolean; notes: string[] } {
  const { values, explicit } = parseFlagsExplicit(argv, spec.flags);
  const notes = spec.normalize?.(values, explicit) ?? [];
  const embedded = spec.isEmbedded(values);
  if (embedded) {
    const defaults = spec.embeddedDefaults(values, explicit);
    applyEmbeddedDefaults(
      values,
      explicit,
      defaults,
      spec.methodOf({ ...values, ...defaults }),
      spec.dialect,
    );
  }
  const options = spec.resolve(values);
  // An embedded default names its own output directory, but the user did not: it is still a default.
  options.outputDirIsDefault = !explicit.has(flagName(spec.dialect, 'output_dir'));
  return { options, embedded, help: values.help === true, notes };
}
