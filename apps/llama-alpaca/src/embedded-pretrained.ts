import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type FlagSpec, type FlagValues, type TrainerCallback, UsageError } from '@badam/core';
import { ByteTokenizer, type InstructionExample } from '@badam/data';
import {
  BUILTIN_INITIALIZER_RANGE,
  builtinLlamaConfig,
  embeddedPretrainedDir,
  generatedCorpus,
} from '@badam/embedded';
import { LlamaForCausalLM, loadLlama, saveLlama } from '@badam/models';
import { writeFileAtomic } from '@badam/safetensors';
import type { DeviceRunModel } from './device-model.js';
import { prepareBackend, type RunIO, runTraining } from './run-training.js';
import type { TrainOptions } from './train-options.js';

/**
 * The pretrained start the embedded default and `compare` fine-tune from: the built-in tiny Llama after
 * {@link PRETRAINED_STEPS} steps of `badam-llama pretrain` (config.json, model.safetensors,
 * pretraining.json), shipped in @badam/embedded's `assets/embedded-pretrained`.
 */
export const EMBEDDED_PRETRAINED_DIR = embeddedPretrainedDir();

/**
 * Steps of the shipped pretraining, chosen by watching a longer run (`--snapshot_every 100`): the end of the
 * third 100-step window in a row whose mean training loss was less than 1 % below the window before (curve
 * in docs/benchmarks.md).
 */
export const PRETRAINED_STEPS = 1500;

/** Settings of the pretraining; each is a flag of `badam-llama pretrain` and is recorded in pretraining.json. */
export interface PretrainSettings {
  /** Optimizer steps (full AdamW, cosine schedule). */
  readonly steps: number;
  /** Seed of the initialisation and of the data order; the corpus is drawn with `seed + 1`. */
  readonly seed: number;
  /** Generated lines of text (packed into `cutoffLen`-token rows). */
  readonly corpusLines: number;
  readonly learningRate: number;
  /**
   * Schedule after the warmup. With `constant` and a fixed warmup a run of N steps is exactly the first N
   * steps of a longer run, so a long run can be watched and its snapshot at step N shipped.
   */
  readonly lrSchedulerType: 'cosine' | 'constant';
  readonly warmupSteps: number;
  readonly batchSize: number;
  readonly cutoffLen: number;
}

export const DEFAULT_PRETRAIN_SETTINGS: PretrainSettings = {
  steps: PRETRAINED_STEPS,
  seed: 42,
  corpusLines: 40_000,
  learningRate: 3e-3,
  lrSchedulerType: 'constant',
  warmupSteps: 100,
  batchSize: 16,
  cutoffLen: 64,
};

/** What pretraining.json records beside the weights. */
export interface PretrainingRecord {
  readonly settings: PretrainSettings;
  /** Mean logged training loss of each 100-step window, the last one ending at `steps`. */
  readonly loss_per_100_steps: readonly { readonly steps: string; readonly loss: number }[];
  /** The last window's mean: the loss the start was pretrained to. */
  readonly final_loss: number;
}

/** The flags of `badam-llama pretrain`. */
export const PRETRAIN_FLAGS: Readonly<Record<string, FlagSpec>> = {
  max_steps: {
    type: 'integer',
    min: 1,
    default: DEFAULT_PRETRAIN_SETTINGS.steps,
    help: 'optimizer steps (full AdamW, cosine)',
  },
  seed: {
    type: 'integer',
    min: 0,
    default: DEFAULT_PRETRAIN_SETTINGS.seed,
    help: 'seed of the initialisation and data order (the corpus uses seed + 1)',
  },
  corpus_lines: {
    type: 'integer',
    min: 1,
    default: DEFAULT_PRETRAIN_SETTINGS.corpusLines,
    help: 'generated lines of text',
  },
  learning_rate: {
    type: 'number',
    min: 0,
    exclusiveMin: true,
    default: DEFAULT_PRETRAIN_SETTINGS.learningRate,
    help: 'peak learning rate',
  },
  lr_scheduler_type: {
    type: 'string',
    choices: ['cosine', 'constant'],
    default: DEFAULT_PRETRAIN_SETTINGS.lrSchedulerType,
    help: 'schedule after the 100 warmup steps (constant: a run of N steps is the first N steps of a longer one)',
  },
  snapshot_every: {
    type: 'integer',
    min: 0,
    default: 0,
    help: 'also write the start as it is every N steps to <log_dir>/step-<N>/ (what --max_steps N writes), to choose --max_steps by watching the loss; 0: none',
  },
  per_device_train_batch_size: {
    type: 'integer',
    min: 1,
    default: DEFAULT_PRETRAIN_SETTINGS.batchSize,
    help: 'rows per step',
  },
  output_dir: {
    type: 'string',
    default: join('output', 'embedded-pretrained'),
    help: 'where config.json, model.safetensors and pretraining.json go (the shipped start: packages/embedded/assets/embedded-pretrained)',
  },
  log_dir: {
    type: 'string',
    default: join('output', 'embedded-pretraining-log'),
    help: 'where trainer_log.jsonl and training_loss.png go (kept apart: they hold timings, which differ between runs)',
  },
  help: { type: 'boolean', default: false, help: 'show this help' },
};

/** The generated text as training examples: one user turn per line, no answer (stage `pt` packs them). */
function corpusExamples(lines: number, seed: number): InstructionExample[] {
  return generatedCorpus(lines, seed).map((line) => ({ turns: [{ user: line, assistant: '' }], system: '' }));
}

/**
 * Pretrains `model` in place with full AdamW on generated text (statements such as `abc reversed is cba.`),
 * so that instruction tuning starts from a model that has seen the vocabulary and the skills. `options`
 * gives the backend and where the run's log goes (`outputDir`); everything else comes from `settings`.
 * Returns the run's metrics.
 */
export async function pretrainOnGeneratedText(
  model: LlamaForCausalLM | DeviceRunModel,
  tokenizer: ByteTokenizer,
  options: TrainOptions,
  io: RunIO,
  settings: Pick<PretrainSettings, 'steps' | 'seed' | 'corpusLines'> & Partial<PretrainSettings>,
  {
    logDir = join(options.outputDir, 'pretrain'),
    plotLoss = false,
    callbacks = [],
  }: { logDir?: string; plotLoss?: boolean; callbacks?: readonly TrainerCallback[] } = {},
): Promise<Record<string, number | string>> {
  const run = await runTraining(
    {
      ...options,
      stage: 'pt',
      method: 'full',
      template: undefined,
      seed: settings.seed,
      maxSteps: settings.steps,
      learningRate: settings.learningRate ?? DEFAULT_PRETRAIN_SETTINGS.learningRate,
      batchSize: settings.batchSize ?? options.batchSize,
      cutoffLen: settings.cutoffLen ?? options.cutoffLen,
      lrSchedulerType: settings.lrSchedulerType ?? 'cosine',
      warmupRatio: 0.05,
      warmupSteps: settings.warmupSteps,
      valSize: 0,
      evalSteps: undefined,
      saveSteps: undefined,
      resumeFromCheckpoint: undefined,
      doPredict: false,
      plotLoss,
      overwriteOutputDir: true,
      outputDir: logDir,
      outputDirIsDefault: false,
      gradientAccumulationSteps: 1,
    },
    io,
    {
      ...(model instanceof LlamaForCausalLM ? { model } : { deviceModel: model }),
      tokenizer,
      examples: corpusExamples(settings.corpusLines, settings.seed + 1),
      skipModelSave: true,
      callbacks,
    },
  );
  return run.metrics;
}

/** Mean logged training loss of each 100-step window (steps 1-100, 101-200, ...) of a run's log entries. */
export function lossPer100Steps(
  log: readonly { step: number; loss?: number }[],
): PretrainingRecord['loss_per_100_steps'] {
  const windows = new Map<number, number[]>();
  for (const p of log) {
    if (p.loss === undefined) continue;
    const end = Math.ceil(p.step / 100) * 100;
    windows.set(end, [...(windows.get(end) ?? []), p.loss]);
  }
  return [...windows.entries()].map(([end, losses]) => ({
    steps: `${end - 99}-${end}`,
    loss: Number((losses.reduce((a, b) => a + b, 0) / losses.length).toFixed(4)),
  }));
}

/**
 * `badam-llama pretrain`: the built-in tiny Llama (seeded initialisation) pretrained with full AdamW on
 * generated text, written as a Hugging Face folder (`config.json`, `model.safetensors`) with
 * `pretraining.json` (settings, loss per 100 steps, final loss). The same settings give the same bytes.
 * With the defaults it makes the start that ships in @badam/embedded's `assets/embedded-pretrained`.
 */
export async function runPretraining(
  options: TrainOptions,
  settings: PretrainSettings,
  dirs: { outputDir: string; logDir: string },
  io: RunIO,
  snapshotEvery = 0,
): Promise<PretrainingRecord> {
  await prepareBackend(
    options,
    io,
    'pretrain makes the shipped start on tfjs (the same settings, the same bytes)',
  );
  const tokenizer = new ByteTokenizer();
  const model = new LlamaForCausalLM(builtinLlamaConfig(), {
    seed: settings.seed,
    initializerRange: BUILTIN_INITIALIZER_RANGE,
  });
  try {
    io.log(
      `badam-llama pretrain: built-in tiny Llama (${model.parameterCount.toLocaleString('en')} parameters), ${settings.steps} steps of full AdamW on ${settings.corpusLines.toLocaleString('en')} generated lines (seed ${settings.seed})`,
    );
    const logged: { step: number; loss?: number }[] = [];
    const recordAt = (steps: number): PretrainingRecord => {
      const windows = lossPer100Steps(logged.filter((l) => l.step <= steps));
      return {
        settings: { ...settings, steps },
        loss_per_100_steps: windows,
        final_loss: windows.at(-1)?.loss ?? Number.NaN,
      };
    };
    const write = async (directory: string, record: PretrainingRecord) => {
      await saveLlama(model, directory);
      await writeFileAtomic(join(directory, 'pretraining.json'), [`${JSON.stringify(record, null, 2)}\n`]);
    };
    const watch: TrainerCallback = {
      onLog: async (_context, entry) => {
        if (entry.loss === undefined) return;
        logged.push({ step: entry.step, loss: entry.loss });
        if (snapshotEvery > 0 && entry.step % snapshotEvery === 0 && entry.step < settings.steps)
          await write(join(dirs.logDir, `step-${entry.step}`), recordAt(entry.step));
      },
    };
    await pretrainOnGeneratedText(model, tokenizer, options, io, settings, {
      logDir: dirs.logDir,
      plotLoss: true,
      callbacks: [watch],
    });
    const record = recordAt(settings.steps);
    const windows = record.loss_per_100_steps;
    await write(dirs.outputDir, record);
    const rows = windows.map((w, i) => {
      const previous = windows[i - 1]?.loss;
      const change =
        previous === undefined ? '' : ` (${((100 * (w.loss - previous)) / previous).toFixed(2)}%)`;
      return `  steps ${w.steps.padEnd(11)} loss ${w.loss.toFixed(4)}${change}`;
    });
    io.log(`\nmean training loss per 100 steps (change on the window before):\n${rows.join('\n')}`);
    io.log(
      `badam-llama pretrain: final loss ${record.final_loss.toFixed(4)}; config.json, model.safetensors, pretraining.json in ${dirs.outputDir}; loss curve in ${join(dirs.logDir, 'training_loss.png')}`,
    );
    return record;
  } finally {
    model.dispose();
  }
}

/** Pretraining settings from `badam-llama pretrain`'s flags. */
export function pretrainSettingsFrom(values: FlagValues): PretrainSettings {
  return {
    ...DEFAULT_PRETRAIN_SETTINGS,
    steps: values.max_steps as number,
    seed: values.seed as number,
    corpusLines: values.corpus_lines as number,
    learningRate: values.learning_rate as number,
    lrSchedulerType: values.lr_scheduler_type as PretrainSettings['lrSchedulerType'],
    batchSize: values.per_device_train_batch_size as number,
  };
}

/** The shipped pretrained start: the model and what its pretraining recorded. */
export async function loadEmbeddedPretrained(
  directory = EMBEDDED_PRETRAINED_DIR,
): Promise<{ model: LlamaForCausalLM; record: PretrainingRecord }> {
  let record: PretrainingRecord;
  try {
    record = JSON.parse(await readFile(join(directory, 'pretraining.json'), 'utf8')) as PretrainingRecord;
  } catch (error) {
    throw new UsageError(
      `${directory}: no pretrained start (pretraining.json: ${(error as Error).message}); make it with \`badam-llama pretrain --output_dir ${directory}\``,
    );
  }
  const { model } = await loadLlama(directory);
  return { model, record };
}
