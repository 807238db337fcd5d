/**
 * Every default of a BAdam run, in one table: core's BlockOptimizer, optimizer description, plan, memory
 * estimate and Trainer read them here, and so do the backends (@badam/tfjs's AdamW and
 * BlockOptimizerRatio, @badam/ratio's masks) and the runners' flags where a flag means the same thing.
 * A runner's command line may choose other starting values of its own (LLaMA-Factory's `max_grad_norm 1`,
 * `learning_rate 1e-5`): those are its flags' defaults, not core's.
 *
 * What "off" is, everywhere: `clipGradNorm` absent or 0 clips nothing (as Hugging Face's `max_grad_norm 0`);
 * `weightDecay` 0 decays nothing (AdamW is then Adam); `switchBlockEvery` -1 never switches; `warmupSteps` 0
 * has no warmup.
 *
 * @example
 * ```ts
 * TRAINING_DEFAULTS.switchBlockEvery; // 50: K when neither the caller nor K's suggestion sets it
 * TRAINING_DEFAULTS.adamw.weightDecay; // 0, as Hugging Face's Trainer
 * ```
 */
export const TRAINING_DEFAULTS = {
  /** K: BAdam's optimizer steps per block. */
  switchBlockEvery: 50,
  /** The bounds K's suggestion `round(n / (B * D))` is clamped to. */
  suggestedSwitchBlockEvery: { min: 50, max: 100 },
  /** BAdam's block order. */
  switchMode: 'ascending',
  /** How an inferred partition groups parameters into blocks. */
  partition: 'layer',
  /** Seed of the random block order, the scatter masks and the runners' data order. */
  seed: 42,
  /** Micro-batches per optimizer step. */
  gradientAccumulationSteps: 1,
  /** 0: no clipping. */
  clipGradNorm: 0,
  /** 0 warnings only; 1 the partition and block switches; 2 every trainable parameter too. */
  verbose: 1,
  /** AdamW, the base optimizer of every block (an optimizer description's fields). */
  adamw: {
    /** A standalone AdamW's learning rate (tf.train.adam's); a BlockOptimizer's is always given. */
    learningRate: 1e-3,
    betas: [0.9, 0.999],
    epsilon: 1e-8,
    /** Decoupled weight decay: 0, as Hugging Face's Trainer (torch.optim.AdamW's own is 0.01). */
    weightDecay: 0,
  },
  /** BlockOptimizerRatio: masked Adam on a fraction of every parameter. */
  ratio: {
    /** The reference's learning rate. */
    learningRate: 1e-5,
    updateRatio: 0.1,
    /** Steps between window moves. */
    switchBlockEvery: 100,
    maskMode: 'adjacent',
    /** Parameters with fewer entries are updated whole. */
    preserveThreshold: 100,
    /** Keep each window's index list while it lasts. */
    keepMask: true,
  },
  /** LoRA adapters. */
  lora: { rank: 8 },
  /** The Trainer's loop. */
  trainer: { loggingSteps: 10, numEpochs: 1 },
  /** Learning-rate schedules. */
  lrSchedule: { warmupSteps: 0, numCycles: 0.5, minLrRatio: 0 },
} as const;
