import { createLrSchedule, planTraining, Trainer, type TrainerCallback } from '@badam/core';
import {
  alpacaExamples,
  ByteTokenizer,
  batchedDataSource,
  chatTemplate,
  encodeGenerationPrompt,
  encodeSupervised,
  type PaddedBatch,
  templateStopIds,
} from '@badam/data';
// The embedded default of badam-llama: the same tiny Llama, generated instructions and causal-LM task, so
// the page fine-tunes exactly what `pnpm start` does, planned by core and assembled by @badam/tfjs as a run is.
import { BUILTIN_INITIALIZER_RANGE, builtinLlamaConfig, generatedInstructions } from '@badam/embedded';
import { causalLmTask, generate, LlamaForCausalLM } from '@badam/models';
import { tfjsBackendModel } from '@badam/tfjs';

/** The in-page run's settings (the page's URL parameters override them). */
export interface BrowserFineTuneSettings {
  /** Optimizer steps. */
  readonly steps: number;
  /** BAdam's K: steps per block. */
  readonly switchBlockEvery: number;
  /** Evaluate every N steps. */
  readonly evalSteps: number;
  readonly loggingSteps: number;
  readonly learningRate: number;
  readonly batchSize: number;
  readonly trainExamples: number;
  readonly evalExamples: number;
  readonly seed: number;
}

/** The page's defaults: a few minutes on a laptop's browser; tests shorten them through the URL. */
export const DEFAULT_BROWSER_SETTINGS: BrowserFineTuneSettings = {
  steps: 200,
  switchBlockEvery: 25,
  evalSteps: 25,
  loggingSteps: 2,
  learningRate: 3e-3,
  batchSize: 16,
  trainExamples: 800,
  evalExamples: 48,
  seed: 42,
};

const CUTOFF = 64;

/**
 * The embedded default's tiny Llama and generated instruction data, built in the browser, and BAdam
 * fine-tuning it as every run is: @badam/core's plan, @badam/tfjs's trainer backend factory and core's
 * Trainer, on whatever tfjs backend is active. Nothing leaves the page.
 */
export class BrowserFineTune {
  readonly model: LlamaForCausalLM;
  readonly tokenizer = new ByteTokenizer();
  readonly template = chatTemplate('default');
  private readonly trainSet;
  private readonly evalSet;

  constructor(readonly settings: BrowserFineTuneSettings) {
    this.model = new LlamaForCausalLM(builtinLlamaConfig(), {
      seed: settings.seed,
      initializerRange: BUILTIN_INITIALIZER_RANGE,
    });
    const data = generatedInstructions(settings.trainExamples, settings.evalExamples, settings.seed);
    const encode = (records: typeof data.train) =>
      encodeSupervised(alpacaExamples(records), this.tokenizer, this.template, { cutoffLen: CUTOFF })
        .examples;
    this.trainSet = encode(data.train);
    this.evalSet = encode(data.eval);
  }

  /** Parameters of the model. */
  get parameterCount(): number {
    return this.model.parameterCount;
  }

  private evalData() {
    return batchedDataSource(this.evalSet, { batchSize: 16, padTokenId: this.tokenizer.padTokenId });
  }

  /** Mean eval loss over the held-out instructions (token-weighted), with the model as it is now. */
  async evalLoss(): Promise<number> {
    const task = causalLmTask(this.model);
    const data = this.evalData();
    let sum = 0;
    let weight = 0;
    for await (const batch of data.batches(0)) {
      const result = task.evaluate!(batch as PaddedBatch);
      sum += result.loss * result.weight;
      weight += result.weight;
      await new Promise((r) => setTimeout(r, 0)); // let the page paint between batches
    }
    return sum / Math.max(weight, 1);
  }

  /** The model's greedy answer to an instruction (a first line, and optionally the input after a newline). */
  answer(question: string, maxNewTokens = 16): string {
    const promptIds = encodeGenerationPrompt(this.template, this.tokenizer, [], question);
    const ids = generate(this.model, promptIds, {
      maxNewTokens,
      temperature: 0,
      stopTokenIds: templateStopIds(this.template, this.tokenizer),
    });
    return this.tokenizer.decode(ids, { skipSpecialTokens: true });
  }

  /** Fine-tunes with BAdam (one layer per block, ascending, AdamW, cosine schedule) for the set steps. */
  async train(callbacks: readonly TrainerCallback[]): Promise<void> {
    const s = this.settings;
    const model = tfjsBackendModel<PaddedBatch>({
      namedParameters: () => this.model.namedParameters,
      task: causalLmTask(this.model),
    });
    const plan = planTraining({
      settings: {
        method: 'block',
        learningRate: s.learningRate,
        switchBlockEvery: s.switchBlockEvery,
        switchMode: 'ascending',
        clipGradNorm: 1,
        seed: s.seed,
        verbose: 0,
      },
      parameters: model.parameters(),
    });
    const backend = await model.createTrainerBackend(plan);
    try {
      const trainer = new Trainer<PaddedBatch>({
        backend: backend.trainer,
        trainData: batchedDataSource(this.trainSet, {
          batchSize: s.batchSize,
          padTokenId: this.tokenizer.padTokenId,
          shuffleSeed: s.seed,
          padToMultipleOf: 8,
        }),
        evalData: this.evalData(),
        maxSteps: s.steps,
        lrSchedule: createLrSchedule({
          type: 'cosine',
          learningRate: s.learningRate,
          totalSteps: s.steps,
          warmupRatio: 0.05,
        }),
        loggingSteps: s.loggingSteps,
        evalSteps: s.evalSteps,
        callbacks: [...callbacks],
      });
      await trainer.train();
    } finally {
      backend.dispose();
    }
  }
}
