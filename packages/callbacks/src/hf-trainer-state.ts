import { CHECKPOINT_FILES, type LogEntry, type TrainerState } from '@badam/core';
import { BEST_MODEL_STATE_KEY, type BestModelState } from './best-model-callback.js';

/** The name Hugging Face's Trainer gives its state file, at the output directory's root and in checkpoints. */
export const HF_TRAINER_STATE = CHECKPOINT_FILES.hfTrainerState;

/** The training arguments Hugging Face's `trainer_state.json` repeats. */
export interface HfTrainingArguments {
  readonly loggingSteps: number;
  readonly evalSteps: number | undefined;
  readonly saveSteps: number | undefined;
  /** Examples per micro-batch on one device (`per_device_train_batch_size`). */
  readonly trainBatchSize: number;
  readonly numTrainEpochs: number;
  /**
   * Trained parameters, for `total_flos` as Hugging Face estimates it (6 x parameters x tokens: forward and
   * backward of a dense model). Unknown: 0.
   */
  readonly parameters?: number;
}

/** One `log_history` entry as Hugging Face writes it: `step`, `epoch` and the logged metrics. */
export type HfLogEntry = Record<string, number | null>;

/** The fields of `transformers.TrainerState` (v4.5x), every one of which trainer_state.json holds. */
export const HF_TRAINER_STATE_FIELDS = [
  'best_global_step',
  'best_metric',
  'best_model_checkpoint',
  'epoch',
  'eval_steps',
  'global_step',
  'is_hyper_param_search',
  'is_local_process_zero',
  'is_world_process_zero',
  'log_history',
  'logging_steps',
  'max_steps',
  'num_input_tokens_seen',
  'num_train_epochs',
  'save_steps',
  'stateful_callbacks',
  'total_flos',
  'train_batch_size',
  'trial_name',
  'trial_params',
] as const;

/** `trainer_state.json` in Hugging Face's schema (`transformers.TrainerState`). */
export interface HfTrainerState extends Record<(typeof HF_TRAINER_STATE_FIELDS)[number], unknown> {
  best_global_step: number | null;
  best_metric: number | null;
  best_model_checkpoint: string | null;
  epoch: number;
  eval_steps: number | null;
  global_step: number;
  is_hyper_param_search: boolean;
  is_local_process_zero: boolean;
  is_world_process_zero: boolean;
  log_history: HfLogEntry[];
  logging_steps: number;
  max_steps: number;
  num_input_tokens_seen: number;
  num_train_epochs: number;
  save_steps: number | null;
  stateful_callbacks: Record<string, unknown>;
  total_flos: number;
  train_batch_size: number;
  trial_name: string | null;
  trial_params: Record<string, unknown> | null;
}

/** Hugging Face keeps a train log's and an eval log's metrics in separate entries; so do we. */
function hfLogEntries(entry: LogEntry): HfLogEntry[] {
  const { step, epoch, eval_loss, ...rest } = entry;
  const train: HfLogEntry = {};
  const evaluation: HfLogEntry = {};
  for (const [key, value] of Object.entries(rest)) {
    if (value === undefined) continue;
    (key.startsWith('eval_') ? evaluation : train)[key] = value;
  }
  if (eval_loss !== undefined) evaluation.eval_loss = eval_loss;
  const out: HfLogEntry[] = [];
  if (train.loss !== undefined) out.push({ epoch, ...train, step });
  if (Object.keys(evaluation).length > 0) out.push({ epoch, ...evaluation, step });
  return out;
}

/**
 * A run's trainer state in Hugging Face's `trainer_state.json` schema, for the tools that read it
 * (LLaMA-Factory's plots, `transformers`' resume checks, dashboards): fractional `epoch`, `global_step`,
 * `log_history` (train and eval entries apart, and `final`, the run's train_* results, last), the training
 * arguments it repeats, and `best_metric` / `best_global_step` / `best_model_checkpoint` (from `BestModelCallback`'s state; null when
 * the run tracks no best model). BAdam's own state,
 * which resume needs, is the store's `badam_trainer_state.json`.
 *
 * @example
 * ```ts
 * const hf = huggingFaceTrainerState(result.state, { loggingSteps: 10, evalSteps: 50, saveSteps: 100,
 *   trainBatchSize: 4, numTrainEpochs: 3 });
 * await writeFileAtomic('output/trainer_state.json', [JSON.stringify(hf, null, 2)]);
 * ```
 */
export function huggingFaceTrainerState(
  state: TrainerState,
  args: HfTrainingArguments,
  final?: Readonly<Record<string, number | string>>,
): HfTrainerState {
  const epoch =
    state.epochLength !== undefined && state.epochLength > 0
      ? state.epoch + state.microBatchInEpoch / state.epochLength
      : state.epoch;
  const totalFlos = 6 * (args.parameters ?? 0) * state.tokensSeen;
  const log = state.logHistory.flatMap(hfLogEntries);
  if (final !== undefined) {
    const numbers = Object.entries(final).filter(
      (e): e is [string, number] => e[0].startsWith('train_') && typeof e[1] === 'number',
    );
    log.push({ epoch, step: state.globalStep, total_flos: totalFlos, ...Object.fromEntries(numbers) });
  }
  // The best checkpoint, when the run tracks one (BestModelCallback's state, under its key).
  const best = state.callbacks?.[BEST_MODEL_STATE_KEY] as Partial<BestModelState> | undefined;
  return {
    best_global_step: best?.best_global_step ?? null,
    best_metric: best?.best_metric ?? null,
    best_model_checkpoint: best?.best_model_checkpoint ?? null,
    epoch,
    eval_steps: args.evalSteps ?? null,
    global_step: state.globalStep,
    is_hyper_param_search: false,
    is_local_process_zero: true,
    is_world_process_zero: true,
    log_history: log,
    logging_steps: args.loggingSteps,
    max_steps: state.maxSteps,
    num_input_tokens_seen: state.tokensSeen,
    num_train_epochs: args.numTrainEpochs,
    save_steps: args.saveSteps ?? null,
    stateful_callbacks: {},
    total_flos: totalFlos,
    train_batch_size: args.trainBatchSize,
    trial_name: null,
    trial_params: null,
  };
}
