import type { BackendMemoryReport } from '../optimizer/block-backend.js';
import type { TrainerState } from './trainer-state.js';

/** Where the run stands, handed to every callback. */
export interface TrainerProgress {
  /** Optimizer steps done. */
  readonly step: number;
  /** Optimizer steps the run will take. */
  readonly maxSteps: number;
  /** Epochs done, fractional (2.5 = halfway through the third epoch), when the data length is known. */
  readonly epoch: number;
  /** Mean loss of the last optimizer step's micro-batches (NaN before the first). */
  readonly loss: number;
  /** Learning rate of the last (or current) step. */
  readonly lr: number;
  /** BAdam's active block (undefined for other optimizers). */
  readonly activeBlock: number | undefined;
  /** Tokens (or examples) trained on so far. */
  readonly tokensSeen: number;
  /** Throughput over this process's run. */
  readonly tokensPerSecond: number;
  /** Wall time of the run, resumed runs included. */
  readonly elapsedMs: number;
  /** Global gradient norm of the last update, when the backend reports it. */
  readonly gradNorm: number | undefined;
  /** What the backend holds now (measured). */
  readonly memory: BackendMemoryReport;
}

/** Requests a callback can make of the trainer; they take effect at the end of the current optimizer step. */
export interface TrainerControl {
  /** End training after the current step (e.g. early stopping, Ctrl-C). */
  stop(reason: string): void;
  /** Save a checkpoint at the end of the current step. */
  requestSave(): void;
  /** Evaluate at the end of the current step. */
  requestEvaluate(): void;
  /** The stop reason, once stop was requested. */
  readonly stopReason: string | undefined;
}

/** What every event receives. */
export interface TrainerContext {
  readonly progress: TrainerProgress;
  readonly state: Readonly<TrainerState>;
  readonly control: TrainerControl;
  /** The backend's one-line description. */
  readonly description: string;
}

/** One logging step's numbers, named as Hugging Face / LLaMA-Factory log them. */
export interface LogEntry {
  readonly step: number;
  readonly epoch: number;
  readonly loss?: number;
  readonly learning_rate?: number;
  readonly grad_norm?: number;
  readonly eval_loss?: number;
  readonly tokens_per_second?: number;
  readonly active_block?: number;
  readonly memory_bytes?: number;
  readonly [metric: string]: number | undefined;
}

/** What a callback can answer about a micro-batch's loss. */
export type LossVerdict = 'keep' | 'skip' | 'stop';

/**
 * Hooks into the training loop. Every method is optional and may be async; the trainer awaits them in the
 * order the callbacks were given.
 */
export interface TrainerCallback {
  /**
   * Key under which the trainer keeps this callback's `saveState()` in checkpoints, so
   * that counters such as early stopping's patience survive a resume. Callbacks without it keep no state.
   */
  readonly stateKey?: string;
  /** Plain-data state to store in checkpoints. */
  saveState?(): unknown;
  /** Restores what `saveState()` returned, on resume. */
  loadState?(state: unknown): void;
  onTrainBegin?(context: TrainerContext): void | Promise<void>;
  onStepBegin?(context: TrainerContext): void | Promise<void>;
  /**
   * Called with each micro-batch's loss before it counts: `skip` drops the current step's gradients (the
   * micro-batch is not counted), `stop` ends training. Used by the NaN/Inf guard.
   */
  onMicroBatchLoss?(
    context: TrainerContext,
    loss: number,
  ): LossVerdict | undefined | Promise<LossVerdict | undefined>;
  onStepEnd?(context: TrainerContext): void | Promise<void>;
  onBlockSwitch?(context: TrainerContext, change: { from: number; to: number }): void | Promise<void>;
  onLog?(context: TrainerContext, entry: LogEntry): void | Promise<void>;
  onEvaluate?(context: TrainerContext, metrics: Readonly<Record<string, number>>): void | Promise<void>;
  onSave?(context: TrainerContext, checkpoint: { path: string; step: number }): void | Promise<void>;
  onTrainEnd?(context: TrainerContext): void | Promise<void>;
}
